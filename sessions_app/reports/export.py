"""Sessions streamed out as CSV or JSON lines, in constant memory (docs/reports.md, Export).

Rows are read through a server-side cursor (`QuerySet.iterator(chunk_size=…)`, a named PostgreSQL
cursor) inside a transaction: outside one, Django declares the cursor `WITH HOLD`, which PostgreSQL
fills with the whole result before the first row. The generators hold that transaction open while
they run; closing one early (a client that hangs up) rolls it back, which closes the cursor.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from sessions_app.models import Message, Session

FORMATS = ("csv", "jsonl")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
# The header row; JSON lines use the same names with underscores for spaces.
COLUMNS = (
    "id",
    "channel",
    "contact phone",
    "contact name",
    "status",
    "created_at",
    "first_message_at",
    "last_message_at",
    "message_count",
    "title",
    "business_id",
)
KEYS = tuple(column.replace(" ", "_") for column in COLUMNS)
_FIELDS = (
    "id",
    "channel_kind",
    "contact__phone",
    "contact__display_name",
    "contact__whatsapp_profile_name",
    "status",
    "created_at",
    "first_message_at",
    "last_message_at",
    "message_count",
    "title",
    "business_id",
)
_MESSAGE_FIELDS = (
    "session_id",
    "id",
    "direction",
    "role",
    "content",
    "media",
    "delivery_status",
    "created_at",
)
CHUNK_SIZE = 2000  # rows per fetch from the server-side cursor
FLUSH_ROWS = 500  # rows per piece of the response (and per transcripts query)
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection); free-text
# cells that do get a leading apostrophe. Phone numbers ("+1555…") are not free text and stay as they are.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Progress = Callable[[int], None]


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _record(row: tuple[Any, ...]) -> dict[str, Any]:
    (pk, kind, phone, display_name, profile_name, status, created, first, last, count, title, business) = row
    return {
        "id": str(pk),
        "channel": kind,
        # The person's name as known (display name, else WhatsApp profile name); empty if unknown,
        # rather than the phone number again.
        "contact_phone": phone or "",
        "contact_name": display_name or profile_name or "",
        "status": status,
        "created_at": _when(created),
        "first_message_at": _when(first),
        "last_message_at": _when(last),
        "message_count": count,
        "title": title,
        "business_id": business,
    }


def _rows(sessions: QuerySet[Session]) -> Iterator[tuple[Any, ...]]:
    return sessions.order_by("created_at", "id").values_list(*_FIELDS).iterator(chunk_size=CHUNK_SIZE)


def _safe(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_chunks(sessions: QuerySet[Session], progress: Progress | None = None) -> Iterator[str]:
    """The CSV text, a header row then one row per session (oldest first), in pieces."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    with transaction.atomic():
        pending = 0
        for row in _rows(sessions):
            record = _record(row)
            record["contact_name"] = _safe(record["contact_name"])
            record["title"] = _safe(record["title"])
            writer.writerow(["" if value is None else value for value in record.values()])
            pending += 1
            if pending == FLUSH_ROWS:
                yield _drain(buffer)
                if progress:
                    progress(pending)
                pending = 0
        yield _drain(buffer)
        if progress and pending:
            progress(pending)


def jsonl_chunks(
    sessions: QuerySet[Session], *, transcripts: bool = False, progress: Progress | None = None
) -> Iterator[str]:
    """One JSON object per line per session (oldest first); with `transcripts`, each has its
    `messages`, oldest first (one query per FLUSH_ROWS sessions)."""
    with transaction.atomic():
        batch: list[dict[str, Any]] = []
        for row in _rows(sessions):
            batch.append(_record(row))
            if len(batch) == FLUSH_ROWS:
                yield _lines(batch, transcripts)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            yield _lines(batch, transcripts)
            if progress:
                progress(len(batch))


def _lines(batch: list[dict[str, Any]], transcripts: bool) -> str:
    if transcripts:
        messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        thread = (
            Message.objects.filter(session_id__in=[record["id"] for record in batch])
            .order_by("session_id", "created_at", "id")
            .values_list(*_MESSAGE_FIELDS)
        )
        for session_id, pk, direction, role, content, media, delivery, created in thread:
            messages[str(session_id)].append(
                {
                    "id": pk,
                    "direction": direction,
                    "role": role,
                    "content": content,
                    "media": media,
                    "delivery_status": delivery,
                    "created_at": _when(created),
                }
            )
        for record in batch:
            record["messages"] = messages.get(record["id"], [])
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in batch)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def chunks(
    sessions: QuerySet[Session], fmt: str, *, transcripts: bool = False, progress: Progress | None = None
) -> Iterator[str]:
    if fmt == "csv":
        return csv_chunks(sessions, progress)
    return jsonl_chunks(sessions, transcripts=transcripts, progress=progress)
