"""Schema migrations on SQLite and PostgreSQL: the newest revision matches the models,
0002 to 0004 keep existing instances, 0005 gives existing projects version 1, and 0008
leaves the trained context length of existing checkpoints unknown.

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
from berth.db.models import Base, Checkpoint, Endpoint, Instance, Project
from berth.secrets import KeyVault
from berth.service import endpoints, projects
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


def table_columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


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
        # The rows are written through the models, which need the newest schema, and
        # the instance row below goes in after a downgrade to 0001.
        upgrade(database.engine, "head")
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
        downgrade(database.engine, "0001")
        assert "runtime" not in table_columns(database.engine, "instances")
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
        columns_after_downgrade = table_columns(database.engine, "instances")
        upgrade(database.engine, "head")
        columns_after_upgrade = table_columns(database.engine, "instances")
    finally:
        database.dispose()

    assert runtime == ""
    assert note == ""
    assert local_socket == ""
    assert launch == ""
    added = {"runtime", "runtime_note", "local_socket", "launch"}
    assert added.isdisjoint(columns_after_downgrade)
    assert added <= columns_after_upgrade


def test_project_version_revision(database_url: str, tmp_path: Path) -> None:
    database = Database(database_url)
    try:
        upgrade(database.engine, "head")
        set_vault(KeyVault.from_file(tmp_path / "secret.key"))
        with database.session() as session:
            bootstrap(session, ADMIN_KEY)
            principal = authenticate(session, ADMIN_KEY, None)
            project = projects.create_project(session, principal, "research", "")
            session.flush()
            projects.update_project(session, principal, project, None, "changed")
            # An endpoint refers to the project, so a downgrade that copies the projects
            # table would fail on its foreign key.
            endpoints.create_endpoint(
                session,
                principal,
                endpoints.Limits(capacity=4, max_instances_per_endpoint=4),
                project_ref="research",
                name="in-research",
                model_ref="echo",
                instances=1,
            )
            version_before = project.version

        downgrade(database.engine, "0004")
        columns_after_downgrade = table_columns(database.engine, "projects")
        upgrade(database.engine, "head")
        with database.session() as session:
            versions = set(session.scalars(select(Project.version)))
            endpoint_count = len(session.scalars(select(Endpoint.id)).all())
    finally:
        database.dispose()

    assert version_before == 2
    assert "version" not in columns_after_downgrade
    # Projects that existed before the revision start at version 1, as new ones do.
    assert versions == {1}
    assert endpoint_count == 1


def test_trained_context_length_revision(database_url: str, tmp_path: Path) -> None:
    database = Database(database_url)
    try:
        upgrade(database.engine, "head")
        set_vault(KeyVault.from_file(tmp_path / "secret.key"))
        with database.session() as session:
            # The built-in models' checkpoints are the rows that exist before 0008.
            bootstrap(session, ADMIN_KEY)
            for checkpoint in session.scalars(select(Checkpoint)):
                checkpoint.trained_context_length = 512

        downgrade(database.engine, "0007")
        columns_after_downgrade = table_columns(database.engine, "checkpoints")
        upgrade(database.engine, "head")
        with database.session() as session:
            lengths = set(session.scalars(select(Checkpoint.trained_context_length)))
    finally:
        database.dispose()

    assert "trained_context_length" not in columns_after_downgrade
    # Checkpoints recorded before the revision have an unknown trained context length.
    assert lengths == {None}
