"""The session table's indexes after 0007: none redundant, the narrowed ones still serve their filters.

Every index costs an entry per session rewrite (each inbound message, each status change the sweep
makes), so an index that another one already covers is pure cost: docs/sweep.md.
"""

import pytest
from django.db import IntegrityError, connection, transaction

from sessions_app.models import Session
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db

TABLES = ["sessions_app_session", "sessions_app_statuschange"]


def plain_btree_columns(table: str) -> dict[str, tuple[str, ...]]:
    """Each non-partial btree index's key columns (names only: the sort order does not make a leading
    part any less redundant for lookups)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, ARRAY(
                SELECT pg_get_indexdef(i.indexrelid, k + 1, true) FROM generate_subscripts(i.indkey, 1) AS k
            )
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
            WHERE i.indrelid = %s::regclass AND am.amname = 'btree' AND i.indpred IS NULL
            """,
            [table],
        )
        return {name: tuple(columns) for name, columns in cursor.fetchall()}


@pytest.mark.parametrize("table", TABLES)
def test_no_index_is_a_leading_part_of_another(table):
    indexes = plain_btree_columns(table)
    redundant = [
        (short, long)
        for short, short_columns in indexes.items()
        for long, long_columns in indexes.items()
        if short != long and long_columns[: len(short_columns)] == short_columns
    ]
    assert redundant == []


def plan(queryset) -> str:  # type: ignore[no-untyped-def]
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a handful of rows: the planner would scan
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize(
    ("filters", "ordering", "index"),
    [
        ({"business_id": "B1"}, "-last_activity_at", "session_business_recent"),
        ({"owner_id": 1}, "-last_activity_at", "session_owner_recent"),
        ({"location_id": "L1"}, "-last_activity_at", "session_location_recent"),
        ({"agent_id": "A1"}, "-last_activity_at", "session_agent_recent"),
        ({"contact_id": 1}, "-last_activity_at", "session_contact_recent"),
        ({"external_id": "session_1"}, None, "session_external_id_unique"),
        ({}, "-message_count", "session_message_count"),
    ],
)
def test_the_narrowed_indexes_still_serve_the_api_filters(filters, ordering, index):
    SessionFactory(business_id="B1", location_id="L1", agent_id="A1", external_id="session_1")
    SessionFactory()
    queryset = Session.objects.filter(**filters)
    if ordering:
        queryset = queryset.order_by(ordering)
    with transaction.atomic():
        assert index in plan(queryset[:50])


def test_external_ids_stay_unique_and_sessions_without_one_are_unlimited():
    SessionFactory.create_batch(2, external_id=None)
    SessionFactory(external_id="session_1")
    with pytest.raises(IntegrityError), transaction.atomic():
        SessionFactory(external_id="session_1")
    assert Session.objects.filter(external_id=None).count() == 2
