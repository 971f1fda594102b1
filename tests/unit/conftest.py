"""Fixtures of the unit tests that use the service layer on a bootstrapped database."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from berth.auth import authenticate
from berth.bootstrap import bootstrap
from berth.db.engine import Database, migrate
from berth.db.transactions import run_transaction
from berth.secrets import KeyVault
from berth.service import models
from berth.service.keys import set_vault

# The organization admin's platform key in the `database` fixture.
UNIT_ADMIN_KEY = "unit-test-admin-key-service"


@pytest.fixture
def database(tmp_path: Path) -> Database:
    """A migrated SQLite database with the organization admin and the built-in models."""
    database = Database(f"sqlite:///{tmp_path / 'berth.db'}")
    migrate(database.engine)
    set_vault(KeyVault.from_file(tmp_path / "secret.key"))
    with database.session() as session:
        bootstrap(session, UNIT_ADMIN_KEY)
    return database


@pytest.fixture
def gguf_model(database: Database, tmp_path: Path) -> str:
    """Import the tiny GGUF model into the hub and return its name."""
    pytest.importorskip("gguf", reason="the gguf package writes the test model")
    from tests.gguf_model import write_tiny_llama_gguf

    path = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    with database.session() as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        request = models.ImportRequest(path=str(path), name="tiny-gguf")
        models.import_model(session, principal, request, tmp_path / "models")
    return "tiny-gguf"


@contextmanager
def before_first_write(database: Database, action: Callable[[], None]) -> Iterator[list[bool]]:
    """Run `action` once, just before the first INSERT, UPDATE or DELETE on `database`.

    `action` runs on another connection and commits between the reads and the first
    write of the change under test, as when two requests race. The yielded list contains
    True once `action` has run.
    """
    ran: list[bool] = []

    def hook(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if ran or statement.lstrip().split(" ", 1)[0].upper() not in _WRITES:
            return
        ran.append(True)
        action()

    event.listen(database.engine, "before_cursor_execute", hook)
    try:
        yield ran
    finally:
        event.remove(database.engine, "before_cursor_execute", hook)


_WRITES = {"INSERT", "UPDATE", "DELETE"}


def race_on_sqlite(
    database: Database,
    change: Callable[[Session], object],
    other: Callable[[Session], object],
    description: str,
) -> None:
    """Run `change` in a transaction while `other` commits in a session of its own, after
    the change's reads and before its first write, as when two requests race.

    Raises what `change` raises, and AssertionError if `other` never ran.
    """

    def run_other() -> None:
        with database.session() as other_session:
            other(other_session)

    with before_first_write(database, run_other) as ran, database.session() as session:
        try:
            run_transaction(session, lambda: change(session), description)
        finally:
            assert ran, f"the other change never ran during the {description}"
