"""Channel-layer group names. Layers accept only [A-Za-z0-9._-], under 100 characters, so business
ids (free text) are hashed."""

from __future__ import annotations

import hashlib
import uuid

STAFF_GROUP = "staff.sessions"


def business_group(business_id: str) -> str:
    return "biz." + hashlib.sha256(business_id.encode()).hexdigest()[:32]


def session_group(session_id: uuid.UUID | str) -> str:
    return "ses." + uuid.UUID(str(session_id)).hex
