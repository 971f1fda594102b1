"""The server secret that encrypts stored endpoint keys: the check at start and the API's
error for a key that the secret cannot decrypt."""

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from starlette.testclient import TestClient

from berth.api.app import create_api
from berth.auth import authenticate
from berth.db.engine import Database
from berth.db.models import EndpointKey
from berth.secrets import KeyVault, ServerSecretError
from berth.server import open_vault
from berth.service import endpoints as service
from berth.service.keys import set_vault
from berth.settings import Settings
from tests.unit.conftest import UNIT_ADMIN_KEY


@pytest.fixture(autouse=True)
def no_secret_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BERTH_SECRET_KEY", raising=False)


def create_endpoint(database: Database, name: str = "secret-test") -> str:
    with database.session() as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        endpoint, _key = service.create_endpoint(
            session,
            principal,
            service.Limits(capacity=8, max_instances_per_endpoint=16),
            project_ref="default",
            name=name,
            model_ref="echo",
            instances=1,
        )
        return endpoint.id


def stored_keys(database: Database) -> list[tuple[str, str]]:
    with database.session() as session:
        rows = session.execute(select(EndpointKey.id, EndpointKey.key_encrypted)).all()
        return [(row[0], row[1]) for row in rows]


def settings_for(home: Path, secret_key: str | None = None) -> Settings:
    return Settings(home=home, secret_key=secret_key)  # type: ignore[arg-type]


def test_new_home_gets_secret_file(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    database = Database(settings.resolved_database_url)

    vault = open_vault(settings, database)

    assert settings.secret_file.exists()
    assert vault.decrypt(vault.encrypt("berth_ek_x")) == "berth_ek_x"


def test_secret_that_encrypted_keys_is_accepted(database: Database, tmp_path: Path) -> None:
    create_endpoint(database)
    # The `database` fixture encrypts keys with the key in this file.
    key = (tmp_path / "secret.key").read_text().strip()

    vault = open_vault(settings_for(tmp_path / "home", key), database)

    ((_id, token),) = stored_keys(database)
    assert vault.decrypt(token).startswith("berth_ek_")


def test_other_secret_key_stops_start(database: Database, tmp_path: Path) -> None:
    create_endpoint(database)
    before = stored_keys(database)
    other = Fernet.generate_key().decode()
    settings = settings_for(tmp_path / "home", other)

    with pytest.raises(ServerSecretError) as raised:
        open_vault(settings, database)

    message = raised.value.message
    assert "cannot be decrypted with BERTH_SECRET_KEY" in message
    assert "Set BERTH_SECRET_KEY to the key that was in use when the endpoint keys" in message
    assert str(settings.secret_file) in message
    assert other not in message
    assert stored_keys(database) == before


def test_other_secret_file_stops_start(database: Database, tmp_path: Path) -> None:
    create_endpoint(database)
    settings = settings_for(tmp_path / "home")
    settings.secret_file.parent.mkdir(parents=True)
    settings.secret_file.write_bytes(Fernet.generate_key())

    with pytest.raises(ServerSecretError) as raised:
        open_vault(settings, database)

    message = raised.value.message
    assert f"cannot be decrypted with the key in {settings.secret_file}" in message
    assert "Put back the file that was in use" in message
    assert "set BERTH_SECRET_KEY to the key it contained" in message


def test_missing_secret_file_is_not_recreated(database: Database, tmp_path: Path) -> None:
    create_endpoint(database)
    settings = settings_for(tmp_path / "home")

    with pytest.raises(ServerSecretError) as raised:
        open_vault(settings, database)

    message = raised.value.message
    assert f"BERTH_SECRET_KEY is unset and {settings.secret_file} does not exist" in message
    assert not settings.secret_file.exists()


def test_invalid_secret_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "server-secret.key"
    path.write_text("notfernet\n")

    with pytest.raises(ServerSecretError) as raised:
        KeyVault.from_file(path)

    assert f"the server secret in {path} is not a valid Fernet key" in raised.value.message


def test_key_list_under_other_secret_is_clear(database: Database, tmp_path: Path) -> None:
    endpoint_id = create_endpoint(database)
    api = create_api()
    api.state.settings = settings_for(tmp_path / "home")
    api.state.database = database
    set_vault(KeyVault(Fernet.generate_key()))

    with TestClient(api) as client:
        response = client.get(
            f"/endpoints/{endpoint_id}/keys", headers={"Authorization": f"Bearer {UNIT_ADMIN_KEY}"}
        )

    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "server_secret_mismatch"
    assert "a stored endpoint key cannot be decrypted" in error["message"]
    assert "BERTH_SECRET_KEY" in error["message"]
    assert "restore the secret" in error["message"]
