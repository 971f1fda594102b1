"""`berth platform-key` commands against a real server."""

from berth.client import Client
from tests.cli.conftest import RunCli, new_user, parse_json, unique


def test_platform_key_create_list_revoke(cli: RunCli, client: Client) -> None:
    user_key = new_user(client, unique("rae"))

    created = cli("platform-key", "create", "--description", "laptop", BERTH_API_KEY=user_key)
    key_line = next(line for line in created.stdout.splitlines() if line.startswith("Key "))
    key = key_line.split()[-1]
    listed = cli("platform-key", "list", BERTH_API_KEY=key)
    row = next(line for line in listed.stdout.splitlines() if "laptop" in line)
    key_id = row.split()[0]
    revoked = cli("platform-key", "revoke", key_id, BERTH_API_KEY=user_key)
    after = parse_json(cli("platform-key", "list", "-o", "json", BERTH_API_KEY=user_key))
    with_revoked_key = cli("platform-key", "list", BERTH_API_KEY=key)

    assert created.exit_code == 0, created.output
    assert key.startswith("berth_pk_")
    assert "shows it only this once" in created.stdout
    assert row.split()[1:] == [f"{key[:14]}…", "Active", "laptop"]
    assert key not in listed.stdout
    assert all(len(line) <= 80 for line in listed.stdout.splitlines())
    assert revoked.stdout == f"Revoked platform API key {key_id}.\n"
    status = {entry["id"]: entry["revoked_at"] is not None for entry in after}
    assert status[key_id] is True
    assert with_revoked_key.exit_code == 1
    assert "invalid platform API key" in with_revoked_key.stderr


def test_platform_key_revoke_by_key(cli: RunCli, client: Client) -> None:
    user_key = new_user(client, unique("sol"))
    spare = parse_json(cli("platform-key", "create", "-o", "json", BERTH_API_KEY=user_key))

    by_key = cli("platform-key", "revoke", spare["key"], "-o", "json", BERTH_API_KEY=user_key)
    unknown = cli("platform-key", "revoke", "berth_pk_unknown-key", BERTH_API_KEY=user_key)

    assert parse_json(by_key)["id"] == spare["id"]
    assert parse_json(by_key)["revoked_at"] is not None
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: platform API key 'berth_pk_unkno…' not found\n"


def test_platform_key_of_other_user(cli: RunCli, client: Client) -> None:
    tenant, name = unique("keys"), unique("tom")
    client.create_tenant(tenant)
    user_key = new_user(client, name, tenant)
    colleague_key = new_user(client, unique("uma"), tenant)

    created = parse_json(cli("platform-key", "create", "--user", name, "-o", "json"))
    listed = parse_json(cli("platform-key", "list", "--user", name, "-o", "json"))
    revoked = cli("platform-key", "revoke", created["id"], "--user", name)
    first_key_still_works = cli("user", "info", "me", BERTH_API_KEY=user_key)
    colleague = cli("platform-key", "list", "--user", name, BERTH_API_KEY=colleague_key)

    assert [key["description"] for key in listed] == ["created with the user", ""]
    assert revoked.exit_code == 0, revoked.output
    assert first_key_still_works.exit_code == 0, first_key_still_works.output
    assert colleague.exit_code == 1
    assert colleague.stderr == "Error: you may list only your own platform API keys\n"


def test_platform_key_help_names_endpoint_keys(cli: RunCli) -> None:
    result = cli("platform-key", "--help")

    assert result.exit_code == 0
    assert "not endpoint API keys" in result.stdout
    assert "berth endpoint *-apikey" in result.stdout


def test_revoke_other_users_key_hints_user(cli: RunCli, client: Client) -> None:
    name = unique("vic")
    user_key = new_user(client, name)
    created = parse_json(cli("platform-key", "create", "-o", "json", BERTH_API_KEY=user_key))
    missing = "00000000-0000-0000-0000-000000000000"

    as_admin = cli("platform-key", "revoke", created["id"])
    unknown_as_admin = cli("platform-key", "revoke", missing)
    as_user = cli("platform-key", "revoke", missing, BERTH_API_KEY=user_key)

    assert as_admin.exit_code == 1
    assert f"it belongs to user '{name}'" in as_admin.stderr
    assert f"--user {name}" in as_admin.stderr
    assert unknown_as_admin.exit_code == 1
    assert "name the user with --user NAME" in unknown_as_admin.stderr
    assert as_user.exit_code == 1
    assert f"not found among the keys of user '{name}'" in as_user.stderr
    assert "--user" not in as_user.stderr


def test_platform_key_revoke_twice(cli: RunCli, client: Client) -> None:
    user_key = new_user(client, unique("una"))
    spare = parse_json(cli("platform-key", "create", "-o", "json", BERTH_API_KEY=user_key))

    first = cli("platform-key", "revoke", spare["id"], BERTH_API_KEY=user_key)
    again = cli("platform-key", "revoke", spare["id"], BERTH_API_KEY=user_key)
    again_json = cli("platform-key", "revoke", spare["id"], "-o", "json", BERTH_API_KEY=user_key)

    assert first.stdout == f"Revoked platform API key {spare['id']}.\n"
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith(f"Platform API key {spare['id']} was already revoked at ")
    assert again.stdout.endswith("; nothing changed.\n")
    assert parse_json(again_json)["already_revoked"] is True
