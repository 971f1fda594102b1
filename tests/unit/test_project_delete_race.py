"""A project delete racing an endpoint create on PostgreSQL, where two transactions can
write at the same time."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.auth import authenticate
from berth.bootstrap import bootstrap
from berth.db.engine import Database, migrate
from berth.errors import NotFound
from berth.secrets import KeyVault
from berth.service import endpoints, projects
from berth.service.keys import set_vault
from tests.support import fresh_postgres_database

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


@pytest.mark.postgres
def test_endpoint_create_waits_for_delete(postgres_database: Database) -> None:
    outcome: list[BaseException | None] = []

    def create_endpoint() -> None:
        try:
            with postgres_database.session() as session:
                principal = authenticate(session, ADMIN_KEY, None)
                endpoints.create_endpoint(
                    session,
                    principal,
                    LIMITS,
                    project_ref="doomed",
                    name="late",
                    model_ref="echo",
                    instances=1,
                )
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the main thread checks it
            outcome.append(exc)

    with postgres_database.session() as session:
        admin = authenticate(session, ADMIN_KEY, None)
        projects.delete_project(session, admin, projects.find_project(session, admin, "doomed"))
        creator = threading.Thread(target=create_endpoint)
        creator.start()
        # Gives the create time to reach the project row before the delete commits.
        time.sleep(0.5)
    creator.join(timeout=30)

    with postgres_database.session() as session:
        admin = authenticate(session, ADMIN_KEY, None)
        listed, total = endpoints.list_endpoints(session, admin, None, None, 100, 0)

    assert len(outcome) == 1
    assert isinstance(outcome[0], NotFound)
    assert total == 0
    assert listed == []
