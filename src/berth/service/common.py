"""Helpers shared by the service modules."""

import re
import uuid

from sqlalchemy import update
from sqlalchemy.orm import InstrumentedAttribute, Session

from berth.db.engine import next_seq
from berth.db.models import Endpoint, EndpointKey, Instance, Model, Project

MAX_PAGE_SIZE = 500
# Largest row offset a list accepts: SQLite and PostgreSQL take 64-bit signed offsets.
MAX_OFFSET = 2**63 - 1
# Minimum length of an ID start that names an endpoint or platform key. `berth endpoint
# list-apikeys` shows 8 characters of a key's ID.
MIN_KEY_ID_PREFIX_LENGTH = 4
_ID_CHARACTERS = re.compile(r"[0-9a-fA-F-]+")


def new_id() -> str:
    return str(uuid.uuid4())


def lock_row(
    session: Session, row: Endpoint | Model | Project, column: InstrumentedAttribute[object]
) -> None:
    """Lock `row` for the rest of the transaction and reload it.

    The UPDATE sets `column` to its own value, so it changes nothing, but it takes the
    row lock on PostgreSQL and the database's write lock on SQLite. Concurrent changes of
    one row therefore run one after another, each on top of the one before.
    """
    table = type(row)
    session.execute(
        update(table)
        .where(table.id == row.id)
        .values({column.key: column})
        .execution_options(synchronize_session=False)
    )
    session.refresh(row)


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


def has_only_id_characters(ref: str) -> bool:
    """Return whether `ref` contains only the characters of an ID: hex digits and dashes."""
    return _ID_CHARACTERS.fullmatch(ref) is not None


def looks_like_id_prefix(ref: str) -> bool:
    return len(ref) >= MIN_KEY_ID_PREFIX_LENGTH and has_only_id_characters(ref)
