"""run_transaction on real databases: which failures it re-runs, and how often, how
the retry log names an API request, the API's 503 when every attempt fails, and model
import, which copies its files once and re-runs only its database work. Also the 503
of the API and the web UI for a locked database outside run_transaction.

The PostgreSQL case needs the server on 127.0.0.1:5432 (trust auth); it is skipped
when the server is not reachable, unless BERTH_TEST_REQUIRE_POSTGRES=1.
"""

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, ExceptionContext, create_engine, event, false, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from berth.api.app import create_api
from berth.api.deps import describe_request
from berth.auth import authenticate
from berth.bootstrap import bootstrap
from berth.db.engine import CHANGE_COUNTER, Database, migrate
from berth.db.models import AuditEntry, Checkpoint, Counter, Model, Tenant
from berth.db.transactions import (
    BUSY_RETRY_AFTER_S,
    FIRST_BACKOFF_S,
    MAX_ATTEMPTS,
    busy_failure,
    run_transaction,
    transient_failure,
)
from berth.errors import DatabaseBusy, InvalidInput
from berth.hub import importer
from berth.secrets import KeyVault
from berth.service import models
from berth.service.keys import set_vault
from berth.settings import Settings
from berth.ui import create_ui
from tests.support import fresh_postgres_database
from tests.unit.conftest import UNIT_ADMIN_KEY
from tests.unit.test_reconciler import write_model_folder


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"run_transaction waited {seconds} s before a retry")


def change_counter(session: Session) -> int:
    return int(session.scalar(select(Counter.value).where(Counter.name == CHANGE_COUNTER)))


@pytest.fixture
def impatient_engine(database: Database) -> Iterator[Engine]:
    """An engine on the `database` file that gets "database is locked" at once instead
    of after the server's 30 s busy timeout."""
    engine = create_engine(database.url, connect_args={"timeout": 0})
    yield engine
    engine.dispose()


@pytest.fixture
def write_lock(database: Database) -> Iterator[sqlite3.Connection]:
    """A second connection that holds SQLite's write lock until it rolls back."""
    path = database.url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    yield connection
    if connection.in_transaction:
        connection.rollback()
    connection.close()


def test_integrity_error_is_not_retried(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = []

    with database.session() as session:

        def add_duplicate_counter() -> None:
            attempts.append(1)
            session.add(Counter(name=CHANGE_COUNTER, value=0))
            session.flush()

        with pytest.raises(IntegrityError):
            run_transaction(session, add_duplicate_counter, "duplicate counter", sleep=no_sleep)

    assert len(attempts) == 1
    assert "retrying" not in caplog.text


def test_service_error_is_not_retried(database: Database) -> None:
    attempts = []

    with database.session() as session:

        def change_and_reject() -> None:
            attempts.append(1)
            session.execute(update(Counter).values(value=Counter.value + 1))
            raise InvalidInput("name must not be empty", field="name")

        before = change_counter(session)
        with pytest.raises(InvalidInput):
            run_transaction(session, change_and_reject, "rejected change", sleep=no_sleep)

        after = change_counter(session)

    assert len(attempts) == 1
    assert after == before


def test_locked_sqlite_is_retried(
    impatient_engine: Engine,
    write_lock: sqlite3.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts = []
    waits: list[float] = []

    def release_lock(seconds: float) -> None:
        waits.append(seconds)
        write_lock.rollback()

    with Session(impatient_engine) as session:
        before = change_counter(session)
        session.rollback()

        def bump_counter() -> int:
            attempts.append(1)
            session.execute(update(Counter).values(value=Counter.value + 1))
            return len(attempts)

        with caplog.at_level(logging.WARNING, logger="berth.db.transactions"):
            result = run_transaction(session, bump_counter, "counter bump", sleep=release_lock)

        after = change_counter(session)

    assert result == 2
    assert len(waits) == 1
    assert 0 <= waits[0] <= FIRST_BACKOFF_S
    assert after == before + 1
    assert "counter bump failed with a locked SQLite database (SQLITE_BUSY)" in caplog.text
    assert "(attempt 2 of 3)" in caplog.text


def test_retries_stop_after_max_attempts(
    impatient_engine: Engine,
    write_lock: sqlite3.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts = []
    waits: list[float] = []

    with Session(impatient_engine) as session:

        def bump_counter() -> None:
            attempts.append(1)
            session.execute(update(Counter).values(value=Counter.value + 1))

        with pytest.raises(DatabaseBusy) as raised:
            run_transaction(session, bump_counter, "counter bump", sleep=waits.append)

    assert isinstance(raised.value.__cause__, OperationalError)
    assert "database is locked" in str(raised.value.__cause__)
    assert raised.value.status_code == 503
    assert raised.value.retry_after_s == BUSY_RETRY_AFTER_S
    assert len(attempts) == MAX_ATTEMPTS
    assert len(waits) == MAX_ATTEMPTS - 1
    for retry, wait in enumerate(waits):
        assert 0 <= wait <= FIRST_BACKOFF_S * 2**retry
    assert f"failed with a locked SQLite database (SQLITE_BUSY) {MAX_ATTEMPTS} times" in (
        caplog.text
    )


@pytest.fixture
def impatient_database(database: Database) -> Database:
    """The `database` with a busy timeout of 0, so that a locked database fails at once.

    The server's 30 s busy timeout would make each attempt wait that long.
    """

    def fail_before_setup(connection: sqlite3.Connection, _record: object) -> None:
        connection.execute("PRAGMA busy_timeout = 0")

    def fail_after_setup(connection: sqlite3.Connection, _record: object) -> None:
        connection.execute("PRAGMA busy_timeout = 0")

    database.engine.dispose()
    # Set before the server's set-up of a new connection, which reads the database, and
    # again after it, because the set-up sets 30 s. SQLAlchemy registers a function for
    # an event only once, hence two.
    event.listen(database.engine, "connect", fail_before_setup, insert=True)
    event.listen(database.engine, "connect", fail_after_setup)
    return database


def test_api_returns_503_while_locked(
    impatient_database: Database,
    write_lock: sqlite3.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = impatient_database
    api = create_api()
    api.state.database = database

    with TestClient(api) as client:
        response = client.patch(
            "/tenants/default",
            json={"name": "renamed-while-locked"},
            headers={"Authorization": f"Bearer {UNIT_ADMIN_KEY}"},
        )
    write_lock.rollback()
    with database.session() as session:
        names = set(session.scalars(select(Tenant.name)))

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(BUSY_RETRY_AFTER_S)
    error = response.json()["error"]
    assert error["code"] == "database_busy"
    assert error["message"] == (
        f"this change failed {MAX_ATTEMPTS} times because the database was busy with "
        f"concurrent changes, so nothing was saved; retry the request in {BUSY_RETRY_AFTER_S} s"
    )
    assert error["details"] == {"retry_after": BUSY_RETRY_AFTER_S}
    assert "PATCH /tenants/{tenant} (tenant=default) failed with a locked SQLite" in caplog.text
    assert "giving up" in caplog.text
    assert "renamed-while-locked" not in names


@pytest.fixture
def counted_copies(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record the target folder of every copy that model import makes."""
    targets: list[Path] = []

    def store_files(inspection: importer.Inspection, target: Path) -> Path:
        targets.append(target)
        return original(inspection, target)

    original = importer.store_files
    monkeypatch.setattr(importer, "store_files", store_files)
    return targets


def stored_files(models_dir: Path) -> list[Path]:
    return sorted(path for path in models_dir.rglob("*") if path.is_file())


def test_import_retries_only_database_work(
    impatient_engine: Engine,
    write_lock: sqlite3.Connection,
    counted_copies: list[Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = write_model_folder(tmp_path / "source")
    models_dir = tmp_path / "models"
    failures: list[str] = []

    def release_lock(context: ExceptionContext) -> None:
        failures.append(str(context.original_exception))
        write_lock.rollback()

    # The first write fails because `write_lock` holds the database, and releasing the
    # lock then lets the retry succeed.
    event.listen(impatient_engine, "handle_error", release_lock)
    request = models.ImportRequest(path=str(source), name="retried-import")
    with Session(impatient_engine) as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        with caplog.at_level(logging.WARNING, logger="berth.db.transactions"):
            model, checkpoint = models.import_model(
                session, principal, request, models_dir, "import of retried-import"
            )
        model_id, checkpoint_id = model.id, checkpoint.id

    with Session(impatient_engine) as session:
        saved = session.scalars(select(Checkpoint).where(Checkpoint.model_id == model_id)).all()
        audited = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "model.imported")
        ).all()

    assert len(failures) == 1
    assert "database is locked" in failures[0]
    assert "import of retried-import failed with a locked SQLite database" in caplog.text
    assert counted_copies == [models_dir / "imported" / model_id / checkpoint_id]
    assert [row.id for row in saved] == [checkpoint_id]
    assert [row.resource_id for row in audited] == [model_id]
    assert stored_files(models_dir) == sorted(
        models_dir / "imported" / model_id / checkpoint_id / path.name for path in source.iterdir()
    )


def test_import_while_locked_saves_nothing(
    impatient_engine: Engine,
    write_lock: sqlite3.Connection,
    counted_copies: list[Path],
    tmp_path: Path,
) -> None:
    source = write_model_folder(tmp_path / "source")
    models_dir = tmp_path / "models"
    request = models.ImportRequest(path=str(source), name="locked-import")

    with Session(impatient_engine) as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        with pytest.raises(DatabaseBusy):
            models.import_model(session, principal, request, models_dir)
    write_lock.rollback()
    with Session(impatient_engine) as session:
        names = set(session.scalars(select(Model.name)))

    assert len(counted_copies) == 1
    assert stored_files(models_dir) == []
    assert "locked-import" not in names


def test_import_keeps_files_after_lost_connection(
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = write_model_folder(tmp_path / "source")
    models_dir = tmp_path / "models"
    lost = OperationalError(
        "COMMIT",
        None,
        Exception("server closed the connection unexpectedly"),
        connection_invalidated=True,
    )

    def lose_connection(*_args: object) -> None:
        raise lost

    # A connection lost during the commit leaves open whether the import was saved.
    monkeypatch.setattr(models, "_record_import", lose_connection)
    request = models.ImportRequest(path=str(source), name="lost-import")
    with database.session() as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        with pytest.raises(OperationalError):
            models.import_model(session, principal, request, models_dir)

    assert len(stored_files(models_dir)) == len(list(source.iterdir()))
    assert "keeping the copied files at" in caplog.text


def test_api_import_returns_503_while_locked(
    impatient_database: Database, write_lock: sqlite3.Connection, tmp_path: Path
) -> None:
    source = write_model_folder(tmp_path / "source")
    api = create_api()
    api.state.database = impatient_database
    api.state.settings = Settings(home=tmp_path / "home")  # type: ignore[call-arg]

    with TestClient(api) as client:
        response = client.post(
            "/models/import",
            json={"path": str(source), "name": "api-locked-import"},
            headers={"Authorization": f"Bearer {UNIT_ADMIN_KEY}"},
        )
    write_lock.rollback()
    with impatient_database.session() as session:
        names = set(session.scalars(select(Model.name)))

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(BUSY_RETRY_AFTER_S)
    assert response.json()["error"]["code"] == "database_busy"
    assert stored_files(tmp_path / "home" / "models") == []
    assert "api-locked-import" not in names


@pytest.fixture
def read_lock(impatient_database: Database) -> Iterator[sqlite3.Connection]:
    """A second connection in SQLite's exclusive locking mode, which keeps every other
    connection from reading the database until the test ends.

    It takes the lock only while no other connection is open.
    """
    path = impatient_database.url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA locking_mode=EXCLUSIVE")
    connection.execute("BEGIN EXCLUSIVE")
    yield connection
    connection.close()


ESCAPED_BUSY_MESSAGE = (
    "the database was busy with concurrent changes, so this request failed with a locked "
    f"SQLite database (SQLITE_BUSY); retry the request in {BUSY_RETRY_AFTER_S} s"
)


def test_api_read_returns_503_while_locked(
    impatient_database: Database,
    read_lock: sqlite3.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = create_api()
    api.state.database = impatient_database

    with TestClient(api) as client:
        response = client.get("/tenants", headers={"Authorization": f"Bearer {UNIT_ADMIN_KEY}"})

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(BUSY_RETRY_AFTER_S)
    error = response.json()["error"]
    assert error["code"] == "database_busy"
    assert error["message"] == ESCAPED_BUSY_MESSAGE
    assert error["details"] == {"retry_after": BUSY_RETRY_AFTER_S}
    assert "GET /tenants failed with a locked SQLite database (SQLITE_BUSY)" in caplog.text


def test_api_other_database_error_is_500(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A database without tables: every query fails with "no such table".
    api = create_api()
    api.state.database = Database(f"sqlite:///{tmp_path / 'empty.db'}")

    with TestClient(api) as client:
        response = client.get("/tenants", headers={"Authorization": f"Bearer {UNIT_ADMIN_KEY}"})

    assert response.status_code == 500, response.text
    assert "Retry-After" not in response.headers
    assert response.json()["error"]["code"] == "internal_error"
    assert "no such table" in caplog.text


def ui_client(database: Database, home: Path) -> TestClient:
    ui = create_ui(Settings(home=home), database)  # type: ignore[call-arg]
    return TestClient(
        ui,
        base_url="http://127.0.0.1",
        follow_redirects=False,
        cookies={"berth_session": "token-of-no-session"},
    )


def test_ui_page_returns_503_while_locked(
    impatient_database: Database, read_lock: sqlite3.Connection, tmp_path: Path
) -> None:
    client = ui_client(impatient_database, tmp_path / "home")

    page = client.get("/")
    fragment = client.get("/fragments/live-endpoints")

    assert page.status_code == 503, page.text
    assert page.headers["Retry-After"] == str(BUSY_RETRY_AFTER_S)
    assert "<h1>Something went wrong</h1>" in page.text
    assert "The database was busy with concurrent changes" in page.text
    assert fragment.status_code == 503, fragment.text
    assert fragment.headers["Retry-After"] == str(BUSY_RETRY_AFTER_S)
    assert fragment.text == ESCAPED_BUSY_MESSAGE


def test_ui_change_returns_503_while_locked(
    impatient_database: Database, read_lock: sqlite3.Connection, tmp_path: Path
) -> None:
    client = ui_client(impatient_database, tmp_path / "home")

    response = client.post(
        "/tenant",
        content="tenant=default",
        headers={
            "Origin": "http://127.0.0.1",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(BUSY_RETRY_AFTER_S)
    assert f"This change failed {MAX_ATTEMPTS} times" in response.text


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from fresh_postgres_database("berth_retry")


@pytest.mark.postgres
def test_serialization_failure_is_retried(postgres_url: str) -> None:
    """A REPEATABLE READ transaction whose row another connection changed fails with
    SQLSTATE 40001 at its UPDATE. The second attempt reads the new value and succeeds."""
    engine = create_engine(postgres_url, isolation_level="REPEATABLE READ")
    other = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    attempts = []
    try:
        with other.connect() as connection:
            connection.execute(text("CREATE TABLE items (id int PRIMARY KEY, value int)"))
            connection.execute(text("INSERT INTO items VALUES (1, 0)"))

        with Session(engine) as session, other.connect() as connection:

            def add_one() -> int:
                attempts.append(1)
                value = int(session.scalar(text("SELECT value FROM items WHERE id = 1")))
                if len(attempts) == 1:
                    # Changes the row after this transaction took its snapshot.
                    connection.execute(text("UPDATE items SET value = value + 10"))
                session.execute(text("UPDATE items SET value = :value"), {"value": value + 1})
                return value

            read = run_transaction(session, add_one, "add one", sleep=lambda _seconds: None)

        with other.connect() as connection:
            stored = connection.scalar(text("SELECT value FROM items WHERE id = 1"))
    finally:
        engine.dispose()
        other.dispose()

    assert len(attempts) == 2
    assert read == 10
    assert stored == 11


@pytest.mark.postgres
def test_lock_timeout_is_busy_but_not_retried(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    other = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with other.connect() as connection:
            connection.execute(text("CREATE TABLE items (id int PRIMARY KEY, value int)"))
            connection.execute(text("INSERT INTO items VALUES (1, 0)"))

        with engine.connect() as holder, Session(engine) as session:
            holder.execute(text("SELECT value FROM items WHERE id = 1 FOR UPDATE"))
            session.execute(text("SET lock_timeout = '50ms'"))
            with pytest.raises(OperationalError) as raised:
                session.execute(text("UPDATE items SET value = 1"))
    finally:
        engine.dispose()
        other.dispose()

    assert busy_failure(raised.value) == "lock timeout (SQLSTATE 55P03)"
    assert transient_failure(raised.value) is None


@pytest.mark.postgres
def test_api_returns_503_after_lock_timeout(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(postgres_url)
    migrate(database.engine)
    set_vault(KeyVault.from_file(tmp_path / "secret.key"))
    with database.session() as session:
        bootstrap(session, UNIT_ADMIN_KEY)
    database.engine.dispose()
    event.listen(
        database.engine,
        "connect",
        lambda connection, _record: connection.execute("SET lock_timeout = '50ms'"),
    )
    api = create_api()
    api.state.database = database
    try:
        with database.engine.connect() as holder, TestClient(api) as client:
            holder.execute(text("SELECT id FROM tenants FOR UPDATE"))
            response = client.patch(
                "/tenants/default",
                json={"name": "renamed-after-timeout"},
                headers={"Authorization": f"Bearer {UNIT_ADMIN_KEY}"},
            )
        with database.session() as session:
            names = set(session.scalars(select(Tenant.name)))
    finally:
        database.dispose()

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(BUSY_RETRY_AFTER_S)
    error = response.json()["error"]
    assert error["code"] == "database_busy"
    assert "failed with a lock timeout (SQLSTATE 55P03)" in error["message"]
    assert "retrying" not in caplog.text
    assert "renamed-after-timeout" not in names


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("6f1c2a8e-0b7d-4c1e-9a53-2f0d7c4b9e11", "key=6f1c2a8e-0b7d-4c1e-9a53-2f0d7c4b9e11"),
        ("bk-secret-value-of-the-key", "key=(hidden)"),
    ],
)
def test_request_description_hides_keys(key: str, shown: str) -> None:
    route = Route("/endpoints/{endpoint}/keys/{key}/revoke", endpoint=lambda _request: None)
    scope = {
        "type": "http",
        "method": "POST",
        "root_path": "/api/v1",
        "path": f"/api/v1/endpoints/chat/keys/{key}/revoke",
        "headers": [],
        "route": route,
        "path_params": {"endpoint": "chat", "key": key},
    }

    description = describe_request(Request(scope))

    assert description == (
        f"POST /api/v1/endpoints/{{endpoint}}/keys/{{key}}/revoke (endpoint=chat, {shown})"
    )
    assert "secret" not in description


def test_conflict_log_leaves_out_the_statement(
    database: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from berth.service import projects

    # Make the duplicate check miss, as when two requests race past it.
    original = projects.select
    monkeypatch.setattr(projects, "select", lambda *columns: original(*columns).where(false()))
    api = create_api()
    api.state.database = database
    headers = {"Authorization": f"Bearer {UNIT_ADMIN_KEY}"}

    with TestClient(api) as client:
        first = client.post("/projects", json={"name": "raced"}, headers=headers)
        caplog.set_level(logging.INFO, logger="berth.api.app")
        second = client.post("/projects", json={"name": "raced"}, headers=headers)

    assert first.status_code == 201, first.text
    assert second.status_code == 409, second.text
    assert "conflicting write in POST /projects: UNIQUE constraint failed" in caplog.text
    assert "INSERT" not in caplog.text
