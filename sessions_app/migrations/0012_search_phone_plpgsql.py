"""The phone-suffix function of the search document in PL/pgSQL (docs/ingest.md).

`session_search_phone` became a PL/pgSQL loop instead of an SQL function around a subquery over
`generate_series`, which could not be inlined and was planned again on every call: ~50 µs less per
first message from a number (pgbench of the ingest function). Its text is now part of
`sessions_app/search/document.sql`, which migrations apply whole (sessions_app/sql.py).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0011_search_functions_plpgsql")]

    operations: list[migrations.operations.base.Operation] = []
