"""Who may do what with an endpoint, checked through the CLI.

The endpoint belongs to a plain user ("owner") of tenant A. Each role runs the same
commands on an endpoint of its own. Each command ends one of three ways: exit 0, exit 1
with the server's "may not" message (403), or exit 1 with "not found" (404). A caller
who cannot see an endpoint gets 404, so that it does not learn that the endpoint exists.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from typer.testing import Result

from berth.client import Client
from tests.cli.conftest import RunCli, new_user, unique
from tests.support import ADMIN_KEY, BerthServer

OK = "ok"
FORBIDDEN = "may not"
NOT_FOUND = "not found"

COMMANDS = {
    "info": ("endpoint", "info"),
    "update": ("endpoint", "update", "--description", "changed by the matrix"),
    "add-apikey": ("endpoint", "add-apikey", "--description", "matrix"),
    "stop": ("endpoint", "stop"),
    "delete": ("endpoint", "delete", "--yes"),
}

# Outcome of each command in COMMANDS, in order, per role.
EXPECTED = {
    #               info       update     add-apikey  stop       delete
    "owner": (OK, OK, OK, OK, OK),
    "admin-a": (OK, OK, OK, OK, OK),
    "org-admin": (OK, OK, OK, OK, OK),
    "member-a": (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "member-b": (NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND),
}


@dataclass
class World:
    tenant_a: str
    keys: dict[str, str]
    owner: Client


@pytest.fixture(scope="module")
def world(server: BerthServer, client: Client) -> Iterator[World]:
    tenant_a, tenant_b = unique("perm-a"), unique("perm-b")
    client.create_tenant(tenant_a)
    client.create_tenant(tenant_b)
    keys = {
        "owner": new_user(client, unique("owner"), tenant_a),
        "admin-a": new_user(client, unique("admin-a"), tenant_a, "TenantAdmin"),
        "org-admin": ADMIN_KEY,
        "member-a": new_user(client, unique("member-a"), tenant_a),
        "member-b": new_user(client, unique("member-b"), tenant_b),
    }
    with Client(server=server.url, api_key=keys["owner"]) as owner:
        yield World(tenant_a, keys, owner)
        for endpoint in owner.list_endpoints(limit=500)["items"]:
            owner.delete_endpoint(endpoint["id"])


def outcome(result: Result) -> str:
    if result.exit_code == 0:
        return OK
    if result.exit_code == 1 and "may not" in result.stderr:
        return FORBIDDEN
    if result.exit_code == 1 and "not found" in result.stderr:
        return NOT_FOUND
    return f"exit {result.exit_code}: {result.output.strip()}"


@pytest.mark.parametrize("role", list(EXPECTED))
def test_endpoint_commands_by_role(cli: RunCli, world: World, role: str) -> None:
    endpoint = world.owner.create_endpoint("default", unique("perm"), "echo")
    # Stopped at once: the commands need the record, not a running instance.
    world.owner.stop_endpoint(endpoint["id"])
    # The OrgAdmin acts in another tenant, to show that the role alone grants access.
    tenant = "default" if role == "org-admin" else None

    outcomes = []
    for command in COMMANDS.values():
        result = cli(*command, endpoint["id"], BERTH_API_KEY=world.keys[role], BERTH_TENANT=tenant)
        outcomes.append(outcome(result))

    assert dict(zip(COMMANDS, outcomes, strict=True)) == dict(
        zip(COMMANDS, EXPECTED[role], strict=True)
    )


def test_forbidden_message_names_who_may(cli: RunCli, world: World) -> None:
    endpoint = world.owner.create_endpoint("default", unique("perm"), "echo")
    world.owner.stop_endpoint(endpoint["id"])

    result = cli("endpoint", "stop", endpoint["id"], BERTH_API_KEY=world.keys["member-a"])

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: you may not stop endpoint '{endpoint['name']}': only its owner, a "
        "TenantAdmin of its tenant or an OrgAdmin may\n"
    )


def test_tenant_option_selects_tenant(cli: RunCli, world: World) -> None:
    endpoint = world.owner.create_endpoint("default", unique("perm"), "echo")
    world.owner.stop_endpoint(endpoint["id"])

    in_tenant_a = cli("endpoint", "list", "--tenant", world.tenant_a, "-o", "json")
    from_env = cli("endpoint", "list", "-o", "json", BERTH_TENANT=world.tenant_a)
    in_default = cli("endpoint", "list", "-o", "json")

    assert endpoint["id"] in in_tenant_a.stdout
    assert endpoint["id"] in from_env.stdout
    assert endpoint["id"] not in in_default.stdout
