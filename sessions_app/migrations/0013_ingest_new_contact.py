"""Shortcuts in the ingest function for work it can prove is void (docs/ingest.md).

- A contact the call created has nothing yet: the pair lock, the redelivery check and the session
  lookup are skipped for it.
- The search triggers stay out of the ingest function's way (a transaction-local flag their WHEN
  clauses read), since the function writes the search document itself.
- A session opened for a new contact gets its search document from the call's own values.

All of it is now the text of `sessions_app/ingest/record_inbound.sql` and
`sessions_app/search/document.sql`, which migrations apply whole (sessions_app/sql.py).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0012_search_phone_plpgsql")]

    operations: list[migrations.operations.base.Operation] = []
