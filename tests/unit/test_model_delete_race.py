"""A model or checkpoint delete racing an endpoint create or a model update of an
endpoint: on PostgreSQL, where two transactions can write at the same time, and on
SQLite, where a transaction's reads must share the snapshot of its write."""

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from berth.auth import authenticate
from berth.bootstrap import bootstrap
from berth.db.engine import Database, migrate
from berth.db.models import Endpoint
from berth.errors import Conflict, NotFound
from berth.secrets import KeyVault
from berth.service import endpoints, models
from berth.service.keys import set_vault
from tests.support import fresh_postgres_database, wait_until
from tests.unit.conftest import UNIT_ADMIN_KEY, race_on_sqlite
from tests.unit.test_reconciler import write_model_folder

ADMIN_KEY = "unit-test-admin-key-model-race"
LIMITS = endpoints.Limits(capacity=8, max_instances_per_endpoint=4)
LOCK_WAIT_TIMEOUT_S = 30


@pytest.fixture
def postgres_database(tmp_path: Path) -> Iterator[Database]:
    for url in fresh_postgres_database("berth_model_race"):
        database = Database(url)
        try:
            migrate(database.engine)
            set_vault(KeyVault.from_file(tmp_path / "secret.key"))
            with database.session() as session:
                bootstrap(session, ADMIN_KEY)
            yield database
        finally:
            database.dispose()


def _import(database: Database, key: str, folder: Path, name: str, checkpoint: str) -> None:
    """Import `folder` as checkpoint `checkpoint` of model `name`, linked where it is."""
    if not folder.exists():
        write_model_folder(folder)
    with database.session() as session:
        request = models.ImportRequest(
            path=str(folder), name=name, link=True, checkpoint=checkpoint
        )
        models.import_model(session, authenticate(session, key, None), request, folder.parent)


def _create_endpoint(session: Session, key: str, name: str, model_ref: str) -> None:
    endpoints.create_endpoint(
        session,
        authenticate(session, key, None),
        LIMITS,
        project_ref="default",
        name=name,
        model_ref=model_ref,
        instances=1,
    )


def _update_model(session: Session, key: str, name: str, model_ref: str) -> None:
    principal = authenticate(session, key, None)
    endpoint = endpoints.find_endpoint(session, principal, name, "default")
    change = endpoints.EndpointChange(model=model_ref)
    endpoints.update_endpoint(session, principal, LIMITS, endpoint, change)


def _delete_model(session: Session, key: str, name: str) -> None:
    principal = authenticate(session, key, None)
    model = models.find_model(session, principal, name)
    models.delete_model(session, principal, model, Path("unused-models-dir"))


def _delete_checkpoint(session: Session, key: str, model_ref: str) -> None:
    principal = authenticate(session, key, None)
    model, checkpoint = models.find_checkpoint(session, principal, model_ref)
    assert checkpoint is not None
    models.delete_checkpoint(session, principal, model, checkpoint, Path("unused-models-dir"))


def _endpoint_models(database: Database) -> dict[str, str]:
    """Return the 'MODEL:CHECKPOINT' that each endpoint is set to, by endpoint name."""
    with database.session() as session:
        rows = session.query(Endpoint).filter(Endpoint.deleted_at.is_(None)).all()
        return {
            row.name: f"{row.model.name}:{row.checkpoint.name if row.checkpoint else ''}"
            for row in rows
        }


def _live_model_refs(database: Database, key: str, name: str) -> set[str]:
    """Return the 'MODEL:CHECKPOINT' of the live checkpoints of model `name`, or an
    empty set when the model was deleted."""
    with database.session() as session:
        principal = authenticate(session, key, None)
        try:
            model = models.find_model(session, principal, name)
        except NotFound:
            return set()
        return {f"{name}:{row.name}" for row in model.checkpoints if row.deleted_at is None}


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


def _race_on_postgres(
    database: Database,
    first: Callable[[Session], None],
    second: Callable[[Session], None],
    waiting_for: str,
) -> BaseException | None:
    """Run `first` in an open transaction, start `second` in another thread, and commit
    `first` only once `second` waits for a lock. Return the error that `second` raised,
    or None when it succeeded."""
    outcome: list[BaseException | None] = []

    def run_second() -> None:
        try:
            with database.session() as session:
                second(session)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the main thread checks it
            outcome.append(exc)

    with database.session() as session:
        first(session)
        thread = threading.Thread(target=run_second)
        thread.start()
        try:
            wait_until(lambda: _lock_waits(database) > 0, LOCK_WAIT_TIMEOUT_S, waiting_for)
        finally:
            session.commit()
            thread.join(timeout=LOCK_WAIT_TIMEOUT_S)
    assert len(outcome) == 1
    return outcome[0]


@pytest.mark.postgres
def test_endpoint_create_waits_for_model_delete(
    postgres_database: Database, tmp_path: Path
) -> None:
    _import(postgres_database, ADMIN_KEY, tmp_path / "doomed", "doomed", "main")

    error = _race_on_postgres(
        postgres_database,
        lambda session: _delete_model(session, ADMIN_KEY, "doomed"),
        lambda session: _create_endpoint(session, ADMIN_KEY, "late", "doomed"),
        "the endpoint create to wait for the model's lock",
    )

    assert isinstance(error, NotFound)
    assert "deleted while the endpoint was being created" in str(error)
    assert _endpoint_models(postgres_database) == {}


@pytest.mark.postgres
def test_model_delete_waits_for_endpoint_create(
    postgres_database: Database, tmp_path: Path
) -> None:
    _import(postgres_database, ADMIN_KEY, tmp_path / "busy", "busy", "main")

    error = _race_on_postgres(
        postgres_database,
        lambda session: _create_endpoint(session, ADMIN_KEY, "early", "busy"),
        lambda session: _delete_model(session, ADMIN_KEY, "busy"),
        "the model delete to wait for the endpoint create",
    )

    assert isinstance(error, Conflict)
    assert _endpoint_models(postgres_database) == {"early": "busy:main"}
    assert _live_model_refs(postgres_database, ADMIN_KEY, "busy") == {"busy:main"}


@pytest.mark.postgres
def test_endpoint_update_waits_for_checkpoint_delete(
    postgres_database: Database, tmp_path: Path
) -> None:
    _import(postgres_database, ADMIN_KEY, tmp_path / "c0", "lm", "c0")
    _import(postgres_database, ADMIN_KEY, tmp_path / "c1", "lm", "c1")
    with postgres_database.session() as session:
        _create_endpoint(session, ADMIN_KEY, "roll", "lm:c0")

    error = _race_on_postgres(
        postgres_database,
        lambda session: _delete_checkpoint(session, ADMIN_KEY, "lm:c1"),
        lambda session: _update_model(session, ADMIN_KEY, "roll", "lm:c1"),
        "the endpoint update to wait for the model's lock",
    )

    assert isinstance(error, NotFound)
    assert "deleted while the endpoint was being updated" in str(error)
    assert _endpoint_models(postgres_database) == {"roll": "lm:c0"}
    assert _live_model_refs(postgres_database, ADMIN_KEY, "lm") == {"lm:c0"}


@pytest.mark.postgres
def test_checkpoint_delete_waits_for_endpoint_update(
    postgres_database: Database, tmp_path: Path
) -> None:
    _import(postgres_database, ADMIN_KEY, tmp_path / "c0", "lm", "c0")
    _import(postgres_database, ADMIN_KEY, tmp_path / "c1", "lm", "c1")
    with postgres_database.session() as session:
        _create_endpoint(session, ADMIN_KEY, "roll", "lm:c0")

    error = _race_on_postgres(
        postgres_database,
        lambda session: _update_model(session, ADMIN_KEY, "roll", "lm:c1"),
        lambda session: _delete_checkpoint(session, ADMIN_KEY, "lm:c1"),
        "the checkpoint delete to wait for the endpoint update",
    )

    assert isinstance(error, Conflict)
    assert _endpoint_models(postgres_database) == {"roll": "lm:c1"}
    assert _live_model_refs(postgres_database, ADMIN_KEY, "lm") == {"lm:c0", "lm:c1"}


def test_endpoint_create_sees_model_delete_on_sqlite(database: Database, tmp_path: Path) -> None:
    _import(database, UNIT_ADMIN_KEY, tmp_path / "doomed", "doomed", "main")

    with pytest.raises(NotFound, match="deleted while the endpoint was being created"):
        race_on_sqlite(
            database,
            lambda session: _create_endpoint(session, UNIT_ADMIN_KEY, "late", "doomed"),
            lambda session: _delete_model(session, UNIT_ADMIN_KEY, "doomed"),
            "endpoint create of a model being deleted",
        )

    assert _endpoint_models(database) == {}


def test_endpoint_create_sees_checkpoint_delete_on_sqlite(
    database: Database, tmp_path: Path
) -> None:
    _import(database, UNIT_ADMIN_KEY, tmp_path / "c0", "lm", "c0")
    _import(database, UNIT_ADMIN_KEY, tmp_path / "c1", "lm", "c1")

    with pytest.raises(NotFound, match="deleted while the endpoint was being created"):
        race_on_sqlite(
            database,
            lambda session: _create_endpoint(session, UNIT_ADMIN_KEY, "late", "lm:c1"),
            lambda session: _delete_checkpoint(session, UNIT_ADMIN_KEY, "lm:c1"),
            "endpoint create of a checkpoint being deleted",
        )

    assert _endpoint_models(database) == {}


def test_model_delete_sees_endpoint_created_meanwhile_on_sqlite(
    database: Database, tmp_path: Path
) -> None:
    _import(database, UNIT_ADMIN_KEY, tmp_path / "busy", "busy", "main")

    with pytest.raises(Conflict):
        race_on_sqlite(
            database,
            lambda session: _delete_model(session, UNIT_ADMIN_KEY, "busy"),
            lambda session: _create_endpoint(session, UNIT_ADMIN_KEY, "early", "busy"),
            "model delete while an endpoint is created",
        )

    assert _endpoint_models(database) == {"early": "busy:main"}
    assert _live_model_refs(database, UNIT_ADMIN_KEY, "busy") == {"busy:main"}


def test_checkpoint_delete_sees_endpoint_update_on_sqlite(
    database: Database, tmp_path: Path
) -> None:
    _import(database, UNIT_ADMIN_KEY, tmp_path / "c0", "lm", "c0")
    _import(database, UNIT_ADMIN_KEY, tmp_path / "c1", "lm", "c1")
    with database.session() as session:
        _create_endpoint(session, UNIT_ADMIN_KEY, "roll", "lm:c0")

    with pytest.raises(Conflict):
        race_on_sqlite(
            database,
            lambda session: _delete_checkpoint(session, UNIT_ADMIN_KEY, "lm:c1"),
            lambda session: _update_model(session, UNIT_ADMIN_KEY, "roll", "lm:c1"),
            "checkpoint delete while an endpoint moves to it",
        )

    assert _endpoint_models(database) == {"roll": "lm:c1"}
    assert _live_model_refs(database, UNIT_ADMIN_KEY, "lm") == {"lm:c0", "lm:c1"}
