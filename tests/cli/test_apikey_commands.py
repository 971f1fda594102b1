"""`berth endpoint *-apikey` commands against a real server."""

from typing import Any

import pytest
from sqlalchemy import update

from berth.cli import output
from berth.client import Client
from berth.db.models import EndpointKey
from tests.cli.conftest import RunCli, parse_json, unboxed
from tests.support import BerthServer, server_database


@pytest.fixture
def endpoint(cli: RunCli) -> dict[str, Any]:
    # Keys work in every endpoint state, so these tests do not wait for Live.
    result = cli("endpoint", "create", "--endpoint-name", "keyed", "--model", "echo", "-o", "json")
    return parse_json(result)  # type: ignore[no-any-return]


def first_key_id(client: Client, endpoint: str) -> str:
    return next(key["id"] for key in client.list_keys(endpoint) if key["is_first"])


def add_key(cli: RunCli, description: str) -> dict[str, Any]:
    result = cli("endpoint", "add-apikey", "keyed", "--description", description, "-o", "json")
    return parse_json(result)  # type: ignore[no-any-return]


def key_info(cli: RunCli, key_id: str) -> dict[str, Any]:
    result = cli("endpoint", "info-apikey", "keyed", "--apikey", key_id, "-o", "json")
    return parse_json(result)  # type: ignore[no-any-return]


def test_list_apikeys_shows_first_key(cli: RunCli, endpoint: dict[str, Any]) -> None:
    table = cli("endpoint", "list-apikeys", "--endpoint", "keyed", COLUMNS="100")
    as_json = cli("endpoint", "list-apikeys", "--endpoint", "keyed", "-o", "json")

    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].split() == ["ID", "Key", "Status", "Description"]
    row = next(line for line in table.stdout.splitlines() if endpoint["first_key"] in line)
    keys = parse_json(as_json)
    assert row.split() == [keys[0]["id"][:8], endpoint["first_key"], "Active", "FirstKey"]
    assert [key["key"] for key in keys] == [endpoint["first_key"]]
    assert keys[0]["is_first"] is True


def test_list_apikeys_narrow_terminal(cli: RunCli, endpoint: dict[str, Any]) -> None:
    added = add_key(cli, "a description that would fold in a table")

    blocks = cli("endpoint", "list-apikeys", "keyed", COLUMNS="80")

    assert blocks.exit_code == 0, blocks.output
    assert all(len(line) <= 80 for line in blocks.stdout.splitlines())
    assert f"ID           {added['id']}\n" in blocks.stdout
    assert f"Key          {added['key']}\n" in blocks.stdout
    assert "Status       Active\n" in blocks.stdout
    assert "Description  a description that would fold in a table\n" in blocks.stdout


def test_apikey_takes_listed_short_id(cli: RunCli, endpoint: dict[str, Any]) -> None:
    added = add_key(cli, "short id")
    table = cli("endpoint", "list-apikeys", "keyed", COLUMNS="100")
    short_id = next(line.split()[0] for line in table.stdout.splitlines() if added["key"] in line)

    edited = cli(
        "endpoint", "edit-apikey", "keyed", "--apikey", short_id, "--description", "renamed",
        "-o", "json",
    )  # fmt: skip

    assert short_id == added["id"][:8]
    assert parse_json(edited)["id"] == added["id"]
    assert parse_json(edited)["description"] == "renamed"


def test_add_apikey_then_info(cli: RunCli, endpoint: dict[str, Any]) -> None:
    added = add_key(cli, "batch jobs")

    by_id = cli("endpoint", "info-apikey", "--endpoint", "keyed", "--apikey", added["id"])
    by_key = cli("endpoint", "info-apikey", "keyed", "--apikey", added["key"], "-o", "json")

    assert added["description"] == "batch jobs"
    assert added["status"] == "Active"
    assert by_id.exit_code == 0, by_id.output
    assert f"Key          {added['key']}" in by_id.stdout
    assert "Description  batch jobs" in by_id.stdout
    assert "FirstKey     no" in by_id.stdout
    assert parse_json(by_key) == added


def test_add_apikey_needs_description(cli: RunCli, endpoint: dict[str, Any]) -> None:
    result = cli("endpoint", "add-apikey", "keyed")

    assert result.exit_code == 2
    assert "Missing option '--description'" in unboxed(result.output)


def test_edit_apikey_changes_description(cli: RunCli, endpoint: dict[str, Any]) -> None:
    added = add_key(cli, "old")

    result = cli(
        "endpoint",
        "edit-apikey",
        "--endpoint",
        "keyed",
        "--apikey",
        added["id"],
        "--description",
        "new",
    )

    assert result.exit_code == 0, result.output
    assert "Description  new" in result.stdout
    assert key_info(cli, added["id"])["description"] == "new"


def test_revoke_apikey_marks_revoked(cli: RunCli, endpoint: dict[str, Any]) -> None:
    added = add_key(cli, "short-lived")

    result = cli("endpoint", "revoke-apikey", "--endpoint", "keyed", "--apikey", added["id"])

    assert result.exit_code == 0, result.output
    assert "Status       Revoked" in result.stdout
    info = key_info(cli, added["id"])
    assert info["status"] == "Revoked"
    assert info["revoked_at"] is not None


def test_revoke_apikey_twice_says_so(cli: RunCli, endpoint: dict[str, Any]) -> None:
    added = add_key(cli, "revoked twice")
    first = cli("endpoint", "revoke-apikey", "keyed", "--apikey", added["id"])
    revoked_at = key_info(cli, added["id"])["revoked_at"]

    second = cli("endpoint", "revoke-apikey", "keyed", "--apikey", added["id"])
    as_json = cli("endpoint", "revoke-apikey", "keyed", "--apikey", added["id"], "-o", "json")

    assert first.exit_code == 0, first.output
    assert "already revoked" not in first.stdout
    assert second.exit_code == 0, second.output
    expected_time = output.format_time(revoked_at)
    assert second.stdout.startswith(
        f"API key {added['id']} was already revoked at {expected_time}; nothing changed.\n"
    )
    assert "Status       Revoked" in second.stdout
    key = parse_json(as_json)
    assert key["already_revoked"] is True
    assert key["revoked_at"] == revoked_at


def test_edit_first_key_rejected(cli: RunCli, client: Client, endpoint: dict[str, Any]) -> None:
    result = cli(
        "endpoint",
        "edit-apikey",
        "--endpoint",
        "keyed",
        "--apikey",
        first_key_id(client, "keyed"),
        "--description",
        "renamed",
    )

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: the description of the first key (FirstKey) cannot be edited; "
        "add a new key with the description you need\n"
    )
    assert result.stdout == ""


def test_revoke_first_key_rejected(cli: RunCli, client: Client, endpoint: dict[str, Any]) -> None:
    result = cli("endpoint", "revoke-apikey", "keyed", "--apikey", first_key_id(client, "keyed"))

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the first key (FirstKey) cannot be revoked")
    assert client.list_keys("keyed")[0]["status"] == "Active"


def test_info_apikey_unknown_key(cli: RunCli, endpoint: dict[str, Any]) -> None:
    result = cli("endpoint", "info-apikey", "keyed", "--apikey", "no-such-key")

    assert result.exit_code == 1
    assert "not found on endpoint 'keyed'" in result.stderr


@pytest.mark.parametrize("command", ["revoke-apikey", "info-apikey"])
def test_empty_apikey_is_usage_error(cli: RunCli, endpoint: dict[str, Any], command: str) -> None:
    result = cli("endpoint", command, "keyed", "--apikey", " ")

    assert result.exit_code == 2
    assert "must not be empty" in unboxed(result.output)


def test_stored_control_characters_print_escaped(
    cli: RunCli, endpoint: dict[str, Any], server: BerthServer
) -> None:
    added = add_key(cli, "plain")
    # The API rejects control characters now, but older servers stored them.
    stored = "line1\nline2\x1b[31mRED\tx\x85 [red]y[/red]\u202e"
    database = server_database(server)
    try:
        with database.session() as session:
            session.execute(
                update(EndpointKey).where(EndpointKey.id == added["id"]).values(description=stored)
            )
    finally:
        database.dispose()

    table = cli("endpoint", "list-apikeys", "keyed", COLUMNS="200")
    info = cli("endpoint", "info-apikey", "keyed", "--apikey", added["id"])
    as_json = cli("endpoint", "info-apikey", "keyed", "--apikey", added["id"], "-o", "json")

    escaped = "line1\\nline2\\x1b[31mRED\\tx\\x85 [red]y[/red]\\u202e"
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if added["id"][:8] in line)
    assert row.endswith(escaped)
    assert len(table.stdout.splitlines()) == 4
    assert info.exit_code == 0, info.output
    assert escaped in info.stdout
    # JSON output keeps the stored text, written with JSON's escapes.
    assert parse_json(as_json)["description"] == stored
    assert "\\u0085" in as_json.stdout
    for output_text in (table.stdout, info.stdout, as_json.stdout):
        assert "\x1b" not in output_text
        assert "\x85" not in output_text
        assert "\u202e" not in output_text
        assert "\t" not in output_text


def test_add_apikey_rejects_control_characters(cli: RunCli, endpoint: dict[str, Any]) -> None:
    result = cli("endpoint", "add-apikey", "keyed", "--description", "line1\x1b[31mRED")

    assert result.exit_code != 0
    assert "contains the control character U+001B at position 6" in result.output
