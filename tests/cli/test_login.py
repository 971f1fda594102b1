"""`berth login` and `berth logout`."""

import json
import stat
from pathlib import Path

from berth.client import Client
from tests.cli.conftest import RunCli, unboxed, unique
from tests.support import ADMIN_KEY, BerthServer


def profile_file(config_home: Path) -> Path:
    return config_home / "berth" / "profile.json"


def test_login_writes_private_profile(cli: RunCli, server: BerthServer, config_home: Path) -> None:
    result = cli(
        "login",
        "--server",
        server.url,
        "--api-key",
        ADMIN_KEY,
        "--tenant",
        "default",
        BERTH_SERVER=None,
        BERTH_API_KEY=None,
    )

    assert result.exit_code == 0, result.output
    path = profile_file(config_home)
    assert str(path) in result.stdout
    assert "as admin in tenant default" in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "server": server.url,
        "api_key": ADMIN_KEY,
        "tenant": "default",
    }


def test_commands_use_saved_profile(cli: RunCli, server: BerthServer) -> None:
    cli("login", "--server", server.url, "--api-key", ADMIN_KEY)

    result = cli("project", "list", "-o", "json", BERTH_SERVER=None, BERTH_API_KEY=None)

    assert result.exit_code == 0, result.output
    assert "default" in [project["name"] for project in json.loads(result.stdout)["items"]]


def test_login_invalid_key_saves_nothing(
    cli: RunCli, server: BerthServer, config_home: Path
) -> None:
    result = cli("login", "--server", server.url, "--api-key", "wrong-key-0123456789")

    assert result.exit_code == 1
    assert "invalid platform API key" in result.stderr
    assert not profile_file(config_home).exists()


def test_login_without_key_off_terminal(cli: RunCli, config_home: Path) -> None:
    result = cli("login", BERTH_API_KEY=None)

    assert result.exit_code == 2
    assert "a platform API key is required" in unboxed(result.output)
    assert not profile_file(config_home).exists()


def test_login_reads_key_from_stdin(cli: RunCli, server: BerthServer, config_home: Path) -> None:
    result = cli("login", "--server", server.url, input=f"{ADMIN_KEY}\n", BERTH_API_KEY=None)

    assert result.exit_code == 0, result.output
    assert json.loads(profile_file(config_home).read_text())["api_key"] == ADMIN_KEY


def test_logout_removes_profile(cli: RunCli, server: BerthServer, config_home: Path) -> None:
    cli("login", "--server", server.url, "--api-key", ADMIN_KEY)

    first = cli("logout")
    second = cli("logout")

    assert first.exit_code == 0, first.output
    assert not profile_file(config_home).exists()
    assert second.exit_code == 0
    assert "nothing to remove" in second.stdout


def test_login_tenant_becomes_default(
    cli: RunCli, server: BerthServer, client: Client, config_home: Path
) -> None:
    tenant = unique("login")
    client.create_tenant(tenant)

    result = cli("login", "--server", server.url, "--api-key", ADMIN_KEY, "--tenant", tenant)
    projects = cli("project", "list", "-o", "json", BERTH_SERVER=None, BERTH_API_KEY=None)
    overridden = cli(
        "project",
        "list",
        "--tenant",
        "default",
        "-o",
        "json",
        BERTH_SERVER=None,
        BERTH_API_KEY=None,
    )

    assert result.exit_code == 0, result.output
    assert f"in tenant {tenant}" in result.stdout
    assert json.loads(profile_file(config_home).read_text())["tenant"] == tenant
    assert {row["tenant"]["name"] for row in json.loads(projects.stdout)["items"]} == {tenant}
    assert {row["tenant"]["name"] for row in json.loads(overridden.stdout)["items"]} == {"default"}


def test_login_unknown_tenant_saves_nothing(
    cli: RunCli, server: BerthServer, config_home: Path
) -> None:
    result = cli("login", "--server", server.url, "--api-key", ADMIN_KEY, "--tenant", "nowhere")

    assert result.exit_code == 1
    assert result.stderr == "Error: tenant 'nowhere' not found\n"
    assert not profile_file(config_home).exists()


def test_login_with_only_disabled_tenants(
    cli: RunCli, client: Client, server: BerthServer, config_home: Path
) -> None:
    tenant, name = unique("shut"), unique("vic")
    client.create_tenant(tenant)
    key = client.create_user(name, tenant=tenant, create_key=True)["api_key"]
    client.update_tenant(tenant, disabled=True)
    try:
        result = cli("login", "--server", server.url, "--api-key", key)
    finally:
        client.update_tenant(tenant, disabled=False)

    assert result.exit_code == 0, result.output
    assert f"as {name}, with no active tenant." in result.stdout
    assert f"Note: user '{name}' is a member only of tenant '{tenant}', which is disabled" in (
        unboxed(result.stdout)
    )
    assert f"`berth tenant enable {tenant}`" in result.stdout
    assert profile_file(config_home).exists()


def test_login_without_tenant(cli: RunCli, client: Client, server: BerthServer) -> None:
    name = unique("wes")
    key = client.create_user(name, create_key=True)["api_key"]

    result = cli("login", "--server", server.url, "--api-key", key)

    assert result.exit_code == 0, result.output
    assert f"as {name}, with no active tenant." in result.stdout
    assert f"Note: user '{name}' is not a member of any tenant" in result.stdout
