"""The search document's per-row functions in PL/pgSQL (docs/api.md).

`session_search_head` and `session_search_fields` became PL/pgSQL functions, which keep each
statement's plan for the connection's life (an SQL function with subqueries is planned again on
every call, and the session insert trigger calls them for every new session): 625 → 820 ingest
calls a second on one connection (pgbench). Their text is now part of
`sessions_app/search/document.sql`, which migrations apply whole (sessions_app/sql.py).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0010_sweep_indexes")]

    operations: list[migrations.operations.base.Operation] = []
