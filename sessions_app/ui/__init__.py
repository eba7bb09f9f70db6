"""Staff browser UI for sessions (server-rendered pages under /sessions/)."""
