"""`berth admin create-key`: a platform API key for an OrgAdmin, created in the database of
a running server by a separate process, on SQLite and on PostgreSQL."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.client import Client
from tests.cli.conftest import unique
from tests.support import BerthServer, fresh_postgres_database

COMMAND_TIMEOUT_S = 60


def run_admin(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `berth admin ARGS...` as its own process, with BERTH_* settings from `env`."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("BERTH_") or name.startswith("BERTH_TEST_")
    }
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "berth", "admin", *args],
        env=environment,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def new_org_admin(client: Client, name: str, disabled: bool = False) -> str:
    """Create an OrgAdmin without a key or a password, as after the loss of every key."""
    created = client.create_user(name, is_org_admin=True)
    if disabled:
        client.update_user(created["id"], disabled=True)
    return str(created["id"])


def test_admin_key_works_at_once(server: BerthServer, client: Client) -> None:
    name = unique("lost-admin")
    user_id = new_org_admin(client, name)

    result = run_admin("create-key", "--user", name, BERTH_HOME=str(server.home))

    assert result.returncode == 0, result.stderr
    pairs = [line.split("  ", 1) for line in result.stdout.splitlines() if "  " in line]
    fields = {label.strip(): value.strip() for label, value in pairs}
    key = fields["Key"]
    assert fields["User"] == name
    assert "shows it only this once" in result.stdout
    with Client(server=server.url, api_key=key) as recovered:
        assert recovered.whoami()["user"] == {"id": user_id, "name": name}
        assert recovered.whoami()["is_org_admin"] is True
    keys = client.list_platform_keys(name)
    assert [row["description"] for row in keys] == ["created with berth admin create-key"]
    assert fields["Key ID"] == keys[0]["id"]


def test_admin_key_audit_entry(server: BerthServer, client: Client) -> None:
    name = unique("audited-admin")
    new_org_admin(client, name)

    result = run_admin(
        "create-key",
        "--user",
        name.upper(),
        "--description",
        "after the laptop was lost",
        "-o",
        "json",
        BERTH_HOME=str(server.home),
    )

    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["user"]["name"] == name
    assert created["description"] == "after the laptop was lost"
    assert created["key"].startswith(created["prefix"])
    entries = client.list_audit(resource_id=created["id"])["items"]
    assert len(entries) == 1
    assert entries[0]["action"] == "platform_key.created"
    assert entries[0]["actor"] is None
    assert entries[0]["resource_name"] == "after the laptop was lost"
    assert entries[0]["details"]["owner"] == name
    assert entries[0]["details"]["command"] == "berth admin create-key"
    assert entries[0]["details"]["operator"]
    # The key appears nowhere in the log.
    assert created["key"] not in json.dumps(entries)


def test_admin_key_rejected_users(server: BerthServer, client: Client) -> None:
    plain = unique("plain-user")
    client.create_user(plain)
    disabled = unique("disabled-admin")
    new_org_admin(client, disabled, disabled=True)
    home = str(server.home)

    missing = run_admin("create-key", "--user", "no-such-user", BERTH_HOME=home)
    not_admin = run_admin("create-key", "--user", plain, BERTH_HOME=home)
    off = run_admin("create-key", "--user", disabled, BERTH_HOME=home)

    assert missing.returncode == 1
    assert "user 'no-such-user' not found; the enabled OrgAdmins are 'admin'" in missing.stderr
    assert not_admin.returncode == 1
    assert f"user '{plain}' is not an OrgAdmin" in not_admin.stderr
    assert f"`berth platform-key create --user {plain}`" in not_admin.stderr
    assert off.returncode == 1
    assert f"user '{disabled}' is disabled" in off.stderr
    assert f"`berth user enable {disabled}`" in off.stderr
    assert f"'{disabled}'," not in off.stderr.split("enabled OrgAdmins are")[1]
    assert client.list_platform_keys(plain) == []
    assert client.list_platform_keys(disabled) == []


def test_admin_key_needs_database(tmp_path: Path) -> None:
    home = tmp_path / "empty-home"

    result = run_admin("create-key", "--user", "admin", BERTH_HOME=str(home))

    assert result.returncode == 1
    assert f"no Berth database at {home / 'berth.db'}" in result.stderr
    assert "BERTH_HOME or --home" in result.stderr
    assert not home.exists()


def test_admin_key_long_description(server: BerthServer) -> None:
    result = run_admin(
        "create-key", "--user", "admin", "--description", "x" * 201, BERTH_HOME=str(server.home)
    )

    assert result.returncode == 1
    assert "description is longer than 200 characters" in result.stderr


def test_admin_key_control_character(server: BerthServer) -> None:
    result = run_admin(
        "create-key", "--user", "admin", "--description", "a\tb", BERTH_HOME=str(server.home)
    )

    assert result.returncode == 1
    assert "description contains the control character U+0009 at position 2" in result.stderr


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from fresh_postgres_database("berth_admin_key")


@pytest.mark.postgres
def test_admin_key_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    server = BerthServer(tmp_path / "home", BERTH_DATABASE_URL=postgres_url).start()
    try:
        with server.client() as client:
            name = unique("pg-admin")
            new_org_admin(client, name)

            # Another home folder: the command finds the database through the URL alone.
            result = run_admin(
                "create-key",
                "--user",
                name,
                "-o",
                "json",
                BERTH_HOME=str(tmp_path / "other-home"),
                BERTH_DATABASE_URL=postgres_url,
            )
            assert result.returncode == 0, result.stderr
            key = json.loads(result.stdout)["key"]
            with Client(server=server.url, api_key=key) as recovered:
                assert recovered.whoami()["user"]["name"] == name
    finally:
        server.stop()


@pytest.mark.postgres
def test_admin_key_unreachable_postgres(tmp_path: Path) -> None:
    # Nothing listens on port 9 (discard) of the loopback address here.
    url = "postgresql+psycopg://berth:secret-password@127.0.0.1:9/berth"

    result = run_admin(
        "create-key", "--user", "admin", BERTH_HOME=str(tmp_path), BERTH_DATABASE_URL=url
    )

    assert result.returncode == 1
    assert "cannot open the database postgresql+psycopg://berth:***@127.0.0.1:9/berth" in (
        result.stderr
    )
    assert "secret-password" not in result.stderr


@pytest.mark.postgres
def test_admin_key_empty_postgres(tmp_path: Path, postgres_url: str) -> None:
    result = run_admin(
        "create-key",
        "--user",
        "admin",
        BERTH_HOME=str(tmp_path),
        BERTH_DATABASE_URL=postgres_url,
    )

    assert result.returncode == 1
    assert "contains no Berth tables, because no Berth server has started on it yet" in (
        result.stderr
    )
