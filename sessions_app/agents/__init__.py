"""Agent backends: what answers a conversation. Chosen by the AGENT_BACKEND setting."""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from sessions_app.agents.base import AgentAnswer, AgentBackend, AgentError, StreamingAgentBackend

BACKENDS = {
    "builtin": "sessions_app.agents.builtin.BuiltinAgent",
    "openai": "sessions_app.agents.openai.OpenAIAgent",
}

__all__ = ["AgentAnswer", "AgentBackend", "AgentError", "StreamingAgentBackend", "get_backend"]


def get_backend() -> AgentBackend:
    name = getattr(settings, "AGENT_BACKEND", "builtin")
    backend: AgentBackend = import_string(BACKENDS[name])()
    return backend
