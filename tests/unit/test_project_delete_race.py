"""A project delete racing an endpoint create: on PostgreSQL, where two transactions can
write at the same time, and on SQLite, where a transaction's reads must share the
snapshot of its write."""

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from berth.auth import authenticate
from berth.bootstrap import bootstrap
from berth.db.engine import Database, migrate
from berth.errors import Conflict, NotFound
from berth.secrets import KeyVault
from berth.service import endpoints, projects
from berth.service.keys import set_vault
from tests.support import fresh_postgres_database, wait_until
from tests.unit.conftest import UNIT_ADMIN_KEY, race_on_sqlite

ADMIN_KEY = "unit-test-admin-key-project-race"
LIMITS = endpoints.Limits(capacity=4, max_instances_per_endpoint=4)


@pytest.fixture
def postgres_database(tmp_path: Path) -> Iterator[Database]:
    for url in fresh_postgres_database("berth_project_race"):
        database = Database(url)
        try:
            migrate(database.engine)
            set_vault(KeyVault.from_file(tmp_path / "secret.key"))
            with database.session() as session:
                bootstrap(session, ADMIN_KEY)
                projects.create_project(
                    session, authenticate(session, ADMIN_KEY, None), "doomed", ""
                )
            yield database
        finally:
            database.dispose()


def _create_endpoint(session: Session, key: str, project: str, name: str) -> None:
    endpoints.create_endpoint(
        session,
        authenticate(session, key, None),
        LIMITS,
        project_ref=project,
        name=name,
        model_ref="echo",
        instances=1,
    )


def _delete_project(session: Session, key: str, project: str) -> None:
    admin = authenticate(session, key, None)
    projects.delete_project(session, admin, projects.find_project(session, admin, project))


@pytest.mark.postgres
def test_endpoint_create_waits_for_delete(postgres_database: Database) -> None:
    outcome: list[BaseException | None] = []

    def create_endpoint() -> None:
        try:
            with postgres_database.session() as session:
                _create_endpoint(session, ADMIN_KEY, "doomed", "late")
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the main thread checks it
            outcome.append(exc)

    with postgres_database.session() as session:
        _delete_project(session, ADMIN_KEY, "doomed")
        creator = threading.Thread(target=create_endpoint)
        creator.start()
        # The delete commits only once the create waits for the project row's lock.
        wait_until(
            lambda: _lock_waits(postgres_database) > 0,
            30,
            "the endpoint create to wait for the project's lock",
        )
    creator.join(timeout=30)

    with postgres_database.session() as session:
        admin = authenticate(session, ADMIN_KEY, None)
        listed, total = endpoints.list_endpoints(session, admin, None, None, 100, 0)

    assert len(outcome) == 1
    assert isinstance(outcome[0], NotFound)
    assert total == 0
    assert listed == []


def _lock_waits(database: Database) -> int:
    """Count the other connections of `database` that wait for a lock."""
    with database.session() as session:
        return int(
            session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
            or 0
        )


def test_endpoint_create_sees_delete_on_sqlite(database: Database) -> None:
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        projects.create_project(session, admin, "doomed", "")

    with pytest.raises(NotFound):
        race_on_sqlite(
            database,
            lambda session: _create_endpoint(session, UNIT_ADMIN_KEY, "doomed", "late"),
            lambda session: _delete_project(session, UNIT_ADMIN_KEY, "doomed"),
            "endpoint create in a project being deleted",
        )

    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        _listed, total = endpoints.list_endpoints(session, admin, None, None, 100, 0)
    assert total == 0


def test_delete_sees_endpoint_created_meanwhile_on_sqlite(database: Database) -> None:
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        projects.create_project(session, admin, "busy", "")

    with pytest.raises(Conflict):
        race_on_sqlite(
            database,
            lambda session: _delete_project(session, UNIT_ADMIN_KEY, "busy"),
            lambda session: _create_endpoint(session, UNIT_ADMIN_KEY, "busy", "early"),
            "project delete while an endpoint is created",
        )

    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        assert projects.find_project(session, admin, "busy").name == "busy"
