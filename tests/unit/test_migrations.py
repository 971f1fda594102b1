"""Schema migrations on SQLite and PostgreSQL: the newest revision matches the models, and
0002 to 0004 keep existing instances.

The PostgreSQL cases need the server on 127.0.0.1:5432 (trust auth); they are skipped
when it is not reachable, unless BERTH_TEST_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

from berth.auth import authenticate
from berth.bootstrap import bootstrap
from berth.db.engine import Database, alembic_config, make_engine, migrate
from berth.db.models import Base, Instance
from berth.secrets import KeyVault
from berth.service import endpoints
from berth.service.keys import set_vault
from tests.support import fresh_postgres_database

ADMIN_KEY = "unit-test-admin-key-migrations"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'berth.db'}"
    else:
        yield from fresh_postgres_database()


def upgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def instance_columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("instances")}


def test_newest_revision_matches_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()

    assert differences == []


def test_later_revisions_keep_instances(database_url: str, tmp_path: Path) -> None:
    database = Database(database_url)
    try:
        upgrade(database.engine, "0001")
        assert "runtime" not in instance_columns(database.engine)
        set_vault(KeyVault.from_file(tmp_path / "secret.key"))
        with database.session() as session:
            bootstrap(session, ADMIN_KEY)
            principal = authenticate(session, ADMIN_KEY, None)
            endpoint, _key = endpoints.create_endpoint(
                session,
                principal,
                endpoints.Limits(capacity=4, max_instances_per_endpoint=4),
                project_ref="default",
                name="before-0002",
                model_ref="echo",
                instances=1,
            )
            endpoint_id = endpoint.id
        # The instance row is written as the 0001 schema has it, without the new columns.
        with database.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO instances (id, endpoint_id, generation, state, address, "
                    "restart_count, last_error, created_at, seq) VALUES ('instance-1', "
                    ":endpoint_id, 1, 'Ready', '127.0.0.1:1', 0, '', CURRENT_TIMESTAMP, 0)"
                ),
                {"endpoint_id": endpoint_id},
            )

        upgrade(database.engine, "head")
        with database.session() as session:
            row = session.scalars(select(Instance).where(Instance.id == "instance-1")).one()
            runtime, note, local_socket = row.runtime, row.runtime_note, row.local_socket
            launch = row.launch

        downgrade(database.engine, "0001")
        columns_after_downgrade = instance_columns(database.engine)
        upgrade(database.engine, "head")
        columns_after_upgrade = instance_columns(database.engine)
    finally:
        database.dispose()

    assert runtime == ""
    assert note == ""
    assert local_socket == ""
    assert launch == ""
    added = {"runtime", "runtime_note", "local_socket", "launch"}
    assert added.isdisjoint(columns_after_downgrade)
    assert added <= columns_after_upgrade
