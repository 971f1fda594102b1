"""Who may do what, checked through the REST API for every role and action.

Each row of MATRIX is one role and one action with the expected status. The endpoint
belongs to a plain user ("owner") of tenant A; the other roles are a TenantAdmin of A, a
TenantAdmin of B, an OrgAdmin acting in B, a plain member of A, a plain member of B and
a caller without credentials.
"""

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support import ADMIN_KEY, BerthServer

ROLES = ("owner", "admin_a", "admin_b", "org_admin", "member_a", "member_b", "anonymous")


@dataclass
class World:
    server: BerthServer
    tenant_a: str
    tenant_b: str
    clients: dict[str, httpx.Client]

    def owner_endpoint(self, shared: bool = False) -> dict:
        response = self.clients["owner"].post(
            "/endpoints",
            json={
                "name": f"perm-{uuid.uuid4().hex[:8]}",
                "model": "echo",
                "share_with_all_tenants": shared,
            },
        )
        assert response.status_code == 201, response.text
        endpoint = response.json()
        # Stopped at once: these tests need the records, not running instances.
        self.clients["owner"].post(f"/endpoints/{endpoint['id']}/stop").raise_for_status()
        return endpoint

    def owner_extra_key(self, endpoint_id: str) -> str:
        response = self.clients["owner"].post(
            f"/endpoints/{endpoint_id}/keys", json={"description": "extra"}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


def _client(server: BerthServer, key: str | None, tenant: str | None = None) -> httpx.Client:
    headers = {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if tenant:
        headers["X-Berth-Tenant"] = tenant
    return httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=30)


@pytest.fixture(scope="module")
def world(server: BerthServer) -> Iterator[World]:
    admin = _client(server, ADMIN_KEY)
    suffix = uuid.uuid4().hex[:6]
    tenant_a = admin.post("/tenants", json={"name": f"perm-a-{suffix}"}).json()["name"]
    tenant_b = admin.post("/tenants", json={"name": f"perm-b-{suffix}"}).json()["name"]

    def user(name: str, tenant: str | None, role: str = "User", org_admin: bool = False) -> str:
        response = admin.post(
            "/users",
            json={
                "username": f"{name}-{suffix}",
                "tenant": tenant,
                "role": role,
                "is_org_admin": org_admin,
                "create_key": True,
            },
        )
        assert response.status_code == 201, response.text
        return str(response.json()["api_key"])

    keys = {
        "owner": user("owner", tenant_a),
        "admin_a": user("admin-a", tenant_a, "TenantAdmin"),
        "admin_b": user("admin-b", tenant_b, "TenantAdmin"),
        "org_admin": user("org-admin", tenant_b, org_admin=True),
        "member_a": user("member-a", tenant_a),
        "member_b": user("member-b", tenant_b),
    }
    clients = {role: _client(server, key) for role, key in keys.items()}
    clients["anonymous"] = _client(server, None)
    yield World(server, tenant_a, tenant_b, clients)
    for client in [admin, *clients.values()]:
        client.close()


# Each action gets a fresh endpoint and a fresh extra key, so rows never depend on one
# another. An action returns the HTTP status the caller got.
Action = Callable[[httpx.Client, dict, str], int]

ACTIONS: dict[str, Action] = {
    "view": lambda c, e, k: c.get(f"/endpoints/{e['id']}").status_code,
    "list_keys": lambda c, e, k: c.get(f"/endpoints/{e['id']}/keys").status_code,
    "view_key": lambda c, e, k: c.get(f"/endpoints/{e['id']}/keys/{k}").status_code,
    "update": lambda c, e, k: (
        c.patch(f"/endpoints/{e['id']}", json={"description": "changed"}).status_code
    ),
    "scale": lambda c, e, k: c.patch(f"/endpoints/{e['id']}", json={"instances": 2}).status_code,
    "stop": lambda c, e, k: c.post(f"/endpoints/{e['id']}/stop").status_code,
    "restart": lambda c, e, k: c.post(f"/endpoints/{e['id']}/restart").status_code,
    "delete": lambda c, e, k: c.delete(f"/endpoints/{e['id']}").status_code,
    "add_key": lambda c, e, k: (
        c.post(f"/endpoints/{e['id']}/keys", json={"description": "new"}).status_code
    ),
    "edit_key": lambda c, e, k: (
        c.patch(f"/endpoints/{e['id']}/keys/{k}", json={"description": "renamed"}).status_code
    ),
    "revoke_key": lambda c, e, k: c.post(f"/endpoints/{e['id']}/keys/{k}/revoke").status_code,
}
READS = ("view", "list_keys", "view_key")
OK = {
    "view": 200,
    "list_keys": 200,
    "view_key": 200,
    "update": 200,
    "scale": 200,
    "stop": 200,
    "restart": 200,
    "delete": 200,
    "add_key": 201,
    "edit_key": 200,
    "revoke_key": 200,
}


def _expected(role: str, action: str, shared: bool) -> int:
    if role == "anonymous":
        return 401
    if role in ("owner", "admin_a", "org_admin"):
        return OK[action]
    sees = role == "member_a" or shared
    if not sees:
        return 404
    return OK[action] if action in READS else 403


MATRIX = [
    (role, action, shared, _expected(role, action, shared))
    for shared in (False, True)
    for role in ROLES
    for action in ACTIONS
]


@pytest.fixture(scope="module")
def sharing_on(world: World) -> None:
    admin = _client(world.server, ADMIN_KEY)
    admin.patch("/organization", json={"share_with_all_tenants": True}).raise_for_status()
    admin.close()


@pytest.mark.parametrize(
    ("role", "action", "shared", "expected"),
    MATRIX,
    ids=[f"{'shared' if s else 'private'}-{r}-{a}" for r, a, s, _e in MATRIX],
)
def test_endpoint_permission(
    world: World, sharing_on: None, role: str, action: str, shared: bool, expected: int
) -> None:
    endpoint = world.owner_endpoint(shared=shared)
    key_id = world.owner_extra_key(endpoint["id"])

    status = ACTIONS[action](world.clients[role], endpoint, key_id)

    assert status == expected


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("owner", 201),
        ("admin_a", 201),
        ("member_a", 201),
        ("org_admin", 201),
        ("admin_b", 404),
        ("member_b", 404),
        ("anonymous", 401),
    ],
)
def test_create_in_tenant_a(world: World, role: str, expected: int) -> None:
    client = world.clients[role]

    response = client.post(
        "/endpoints",
        json={"name": f"create-{uuid.uuid4().hex[:8]}", "model": "echo", "instances": 1},
        headers={"X-Berth-Tenant": world.tenant_a},
    )

    assert response.status_code == expected, response.text
    if expected == 201:
        client.post(
            f"/endpoints/{response.json()['id']}/stop",
            headers={"X-Berth-Tenant": world.tenant_a},
        ).raise_for_status()


def test_missing_endpoint_names_the_id(world: World) -> None:
    missing = str(uuid.uuid4())

    response = world.clients["owner"].get(f"/endpoints/{missing}")

    assert response.status_code == 404
    assert missing in response.json()["error"]["message"]


def test_missing_key_names_the_id(world: World) -> None:
    endpoint = world.owner_endpoint()
    missing = str(uuid.uuid4())

    response = world.clients["admin_a"].get(f"/endpoints/{endpoint['id']}/keys/{missing}")

    assert response.status_code == 404
    assert missing in response.json()["error"]["message"]


def test_forbidden_message_says_who_may(world: World) -> None:
    endpoint = world.owner_endpoint()

    response = world.clients["member_a"].post(f"/endpoints/{endpoint['id']}/stop")

    assert response.status_code == 403
    assert "owner" in response.json()["error"]["message"]


def test_shared_endpoint_found_by_name(world: World, sharing_on: None) -> None:
    endpoint = world.owner_endpoint(shared=True)
    name = endpoint["name"]
    member_b = world.clients["member_b"]

    found = member_b.get(f"/endpoints/{name}")
    in_project = member_b.get(f"/endpoints/{name}", params={"project": "default"})
    keys = member_b.get(f"/endpoints/{name}/keys")
    stop = member_b.post(f"/endpoints/{name}/stop")

    assert found.status_code == 200, found.text
    assert found.json()["id"] == endpoint["id"]
    assert found.json()["tenant"]["name"] == world.tenant_a
    assert in_project.json()["id"] == endpoint["id"]
    assert keys.status_code == 200
    # The name finds the endpoint, and the rules of who may change it still apply.
    assert stop.status_code == 403


def test_private_endpoint_not_found_by_name(world: World, sharing_on: None) -> None:
    endpoint = world.owner_endpoint(shared=False)

    response = world.clients["member_b"].get(f"/endpoints/{endpoint['name']}")

    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert f"not found in tenant '{world.tenant_b}'" in message
    assert "shared with all tenants" in message


def test_own_tenant_name_comes_first(world: World, sharing_on: None) -> None:
    shared = world.owner_endpoint(shared=True)
    own = world.clients["admin_b"].post(
        "/endpoints", json={"name": shared["name"], "model": "echo"}
    )
    assert own.status_code == 201, own.text
    world.clients["admin_b"].post(f"/endpoints/{own.json()['id']}/stop").raise_for_status()

    response = world.clients["member_b"].get(f"/endpoints/{shared['name']}")

    assert response.json()["id"] == own.json()["id"]


def test_ambiguous_shared_name_lists_ids(world: World, sharing_on: None) -> None:
    owner = world.clients["owner"]
    name = f"twin-{uuid.uuid4().hex[:8]}"
    project = owner.post("/projects", json={"name": f"second-{uuid.uuid4().hex[:8]}"}).json()
    ids = []
    for project_name in ("default", project["name"]):
        body = {"project": project_name, "name": name, "model": "echo"}
        created = owner.post("/endpoints", json={**body, "share_with_all_tenants": True})
        assert created.status_code == 201, created.text
        owner.post(f"/endpoints/{created.json()['id']}/stop").raise_for_status()
        ids.append(created.json()["id"])

    response = world.clients["member_b"].get(f"/endpoints/{name}")
    by_project = world.clients["member_b"].get(
        f"/endpoints/{name}", params={"project": project["name"]}
    )

    assert response.status_code == 409
    message = response.json()["error"]["message"]
    assert ids[0] in message
    assert ids[1] in message
    assert "ID" in message
    assert by_project.json()["id"] == ids[1]
