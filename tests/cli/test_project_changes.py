"""`berth project update` and `berth project delete`, and the HTTP routes behind them,
against a real server."""

import httpx
import pytest

from berth.cli import output
from berth.client import ApiError, Client
from tests.cli.conftest import RunCli, new_user, parse_json, unique
from tests.support import ADMIN_KEY, BerthServer


def test_project_update_renames(cli: RunCli, client: Client) -> None:
    old_name, new_name = unique("before"), unique("after")
    project = client.create_project(old_name, "first text")

    result = cli("project", "update", old_name, "--name", new_name, "--description", "second text")

    assert result.exit_code == 0, result.output
    assert f"Name         {new_name}" in result.stdout
    assert client.get_project(project["id"])["name"] == new_name
    assert client.get_project(project["id"])["description"] == "second text"


def test_project_update_json(cli: RunCli, client: Client) -> None:
    name = unique("described")
    client.create_project(name)

    data = parse_json(cli("project", "update", name, "--description", "new", "-o", "json"))

    assert data["name"] == name
    assert data["description"] == "new"


def test_project_update_needs_change(cli: RunCli) -> None:
    result = cli("project", "update", "default")

    assert result.exit_code == 2
    assert "nothing to update; pass --name or --description" in result.stderr


def test_project_update_taken_name(cli: RunCli, client: Client) -> None:
    first, second = unique("first"), unique("second")
    client.create_project(first)
    client.create_project(second)

    result = cli("project", "update", second, "--name", first)

    assert result.exit_code == 1
    assert f"a project named '{first}' already exists" in result.stderr


def test_project_update_invalid_name(cli: RunCli) -> None:
    name = unique("valid")
    cli("project", "create", name)

    result = cli("project", "update", name, "--name", "bad name!")

    assert result.exit_code == 1
    assert "--name 'bad name!' is invalid" in result.stderr


def test_default_project_rename_rejected(cli: RunCli) -> None:
    result = cli("project", "update", "default", "--name", unique("main"))

    assert result.exit_code == 1
    assert "project 'default' cannot be renamed" in result.stderr


def test_project_delete_empty(cli: RunCli, client: Client) -> None:
    name = unique("empty")
    project = client.create_project(name)

    result = cli("project", "delete", name, "--yes")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"Deleted project {name} from tenant default.\n"
    with pytest.raises(ApiError) as raised:
        client.get_project(project["id"])
    assert raised.value.status == 404


def test_project_delete_with_endpoints(cli: RunCli, client: Client) -> None:
    name = unique("busy")
    client.create_project(name)
    client.create_endpoint(name, unique("chat"), "echo")

    result = cli("project", "delete", name, "--yes")

    assert result.exit_code == 1
    assert f"project '{name}' still contains 1 endpoint" in result.stderr
    assert client.get_project(name)["name"] == name


def test_default_project_delete_rejected(cli: RunCli) -> None:
    result = cli("project", "delete", "default", "--yes")

    assert result.exit_code == 1
    assert "project 'default' cannot be deleted" in result.stderr


def test_project_delete_on_terminal_asks_first(
    cli: RunCli, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "stdin_is_terminal", lambda: True)
    name = unique("asked")
    client.create_project(name)

    result = cli("project", "delete", name, input="n\n")

    assert result.exit_code == 1
    assert f"Delete project '{name}'?" in result.stderr
    assert client.get_project(name)["name"] == name


def test_project_change_by_other_member(cli: RunCli, client: Client) -> None:
    name = unique("owned")
    client.create_project(name)
    member_key = new_user(client, unique("member"), tenant="default")

    update = cli("project", "update", name, "--description", "mine", BERTH_API_KEY=member_key)
    delete = cli("project", "delete", name, "--yes", BERTH_API_KEY=member_key)

    assert update.exit_code == 1
    assert f"you may not change project '{name}'" in update.stderr
    assert delete.exit_code == 1
    assert f"you may not delete project '{name}'" in delete.stderr


def test_project_patch_unknown_before_invalid(server: BerthServer) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    url = f"{server.url}/api/v1/projects/no-such-project"

    patched = httpx.patch(url, json={"colour": "red"}, headers=headers, timeout=10)
    deleted = httpx.delete(url, headers=headers, timeout=10)

    assert patched.status_code == 404
    assert deleted.status_code == 404


def test_project_patch_invalid_body(server: BerthServer) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    url = f"{server.url}/api/v1/projects/default"

    result = httpx.patch(url, json={"colour": "red"}, headers=headers, timeout=10)

    assert result.status_code == 422


def test_project_delete_status(client: Client, server: BerthServer) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    project = client.create_project(unique("gone"))
    url = f"{server.url}/api/v1/projects/{project['id']}"

    result = httpx.delete(url, headers=headers, timeout=10)

    assert result.status_code == 204
    assert result.content == b""


def test_project_info_shows_version(cli: RunCli, client: Client) -> None:
    name = unique("counted")
    client.create_project(name)
    client.update_project(name, description="changed once")

    result = cli("project", "info", name)

    assert result.exit_code == 0, result.output
    assert "Version      2" in result.stdout


def test_project_stale_version_is_409(client: Client) -> None:
    project = client.create_project(unique("raced"), "first")
    updated = client.update_project(project["id"], description="second", version=1)

    with pytest.raises(ApiError) as error:
        client.update_project(project["id"], description="third", version=1)

    assert project["version"] == 1
    assert updated["version"] == 2
    assert error.value.status == 409
    assert error.value.field == "version"
    assert "was changed by someone else (version 2, you sent 1)" in error.value.message
    assert client.get_project(project["id"])["description"] == "second"


def test_project_patch_stale_version_body(client: Client, server: BerthServer) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    project = client.create_project(unique("raced"))
    client.update_project(project["id"], description="changed")
    url = f"{server.url}/api/v1/projects/{project['id']}"

    result = httpx.patch(url, json={"name": unique("late"), "version": 1}, headers=headers)

    assert result.status_code == 409
    assert result.json()["error"]["field"] == "version"
    assert result.json()["error"]["details"] == {"current_version": 2}
    assert client.get_project(project["id"])["name"] == project["name"]
