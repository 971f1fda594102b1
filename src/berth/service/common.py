"""Helpers shared by the service modules."""

import uuid

from sqlalchemy.orm import Session

from berth.db.engine import next_seq
from berth.db.models import Endpoint, EndpointKey, Instance

MAX_PAGE_SIZE = 500
# Largest row offset a list accepts: SQLite and PostgreSQL take 64-bit signed offsets.
MAX_OFFSET = 2**63 - 1


def new_id() -> str:
    return str(uuid.uuid4())


def mark_changed(session: Session, *rows: Endpoint | EndpointKey | Instance) -> None:
    """Give rows that gateways cache a new change number, inside the current transaction."""
    seq = next_seq(session)
    for row in rows:
        row.seq = seq


def looks_like_id(ref: str) -> bool:
    try:
        uuid.UUID(ref)
    except ValueError:
        return False
    return True
