"""Tenants, users, sign-in, sharing, isolation and the audit log, through the REST API."""

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support import ADMIN_KEY, BerthServer


def api(server: BerthServer, key: str | None = None, tenant: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if tenant:
        headers["X-Berth-Tenant"] = tenant
    return httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=30)


@dataclass
class Tenancy:
    server: BerthServer
    admin: httpx.Client
    owner_a: httpx.Client
    admin_b: httpx.Client
    member_b: httpx.Client
    endpoint_a: dict
    model_private: dict
    model_tenant: dict
    project_a: dict


@pytest.fixture(scope="module")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    home = tmp_path_factory.mktemp("tenancy") / "home"
    server = BerthServer(home).start()
    admin = api(server, ADMIN_KEY)
    admin.post("/tenants", json={"name": "alpha"}).raise_for_status()
    admin.post("/tenants", json={"name": "beta"}).raise_for_status()

    def user(name: str, tenant: str, role: str = "User") -> httpx.Client:
        body = {
            "username": name,
            "tenant": tenant,
            "role": role,
            "create_key": True,
            "password": f"{name}-password-123",
        }
        response = admin.post("/users", json=body)
        assert response.status_code == 201, response.text
        return api(server, response.json()["api_key"])

    owner_a = user("olivia", "alpha")
    admin_b = user("bruno", "beta", "TenantAdmin")
    member_b = user("bella", "beta")

    model_private = owner_a.post(
        "/models",
        json={
            "name": "alpha-secret-model",
            "ml_app": "echo",
            "architecture": "AlphaNet",
            "field_of_application": "Vision",
            "sharing": "private",
        },
    ).json()
    model_tenant = owner_a.post(
        "/models",
        json={
            "name": "alpha-team-model",
            # Echo needs no files, and only an OrgAdmin may register files from the server.
            "ml_app": "echo",
            "architecture": "AlphaNet",
            "sharing": "tenant",
        },
    ).json()
    project_a = owner_a.post("/projects", json={"name": "alpha-research"}).json()
    endpoint_a = owner_a.post(
        "/endpoints",
        json={"project": "alpha-research", "name": "alpha-private", "model": "echo"},
    ).json()
    owner_a.post(f"/endpoints/{endpoint_a['id']}/stop").raise_for_status()

    yield Tenancy(
        server,
        admin,
        owner_a,
        admin_b,
        member_b,
        endpoint_a,
        model_private,
        model_tenant,
        project_a,
    )
    for client in (admin, owner_a, admin_b, member_b):
        client.close()
    server.stop()


def test_other_tenant_sees_no_endpoint(tenancy: Tenancy) -> None:
    for client in (tenancy.member_b, tenancy.admin_b):
        listed = client.get("/endpoints").json()
        by_state = client.get("/endpoints", params={"state": "Stopped"}).json()
        paged = client.get("/endpoints", params={"offset": 1, "limit": 1}).json()

        assert listed["total"] == 0
        assert listed["items"] == []
        assert by_state["total"] == 0
        assert paged["total"] == 0
        assert paged["items"] == []
        assert client.get(f"/endpoints/{tenancy.endpoint_a['id']}").status_code == 404
        assert client.get("/endpoints/alpha-private").status_code == 404
        assert client.get(f"/endpoints/{tenancy.endpoint_a['id']}/keys").status_code == 404


def test_other_tenant_sees_no_project(tenancy: Tenancy) -> None:
    names = {row["name"] for row in tenancy.member_b.get("/projects").json()["items"]}

    assert names == {"default"}
    assert tenancy.member_b.get(f"/projects/{tenancy.project_a['id']}").status_code == 404
    assert (
        tenancy.member_b.get("/endpoints", params={"project": "alpha-research"}).status_code == 404
    )


def test_other_tenant_sees_no_model(tenancy: Tenancy) -> None:
    client = tenancy.member_b
    queries = [
        {},
        {"group": "shared"},
        {"group": "mine"},
        {"search": "alpha"},
        {"architecture": "AlphaNet"},
        {"field_of_application": "Vision"},
        {"owner": "olivia"},
        {"ml_app": "echo", "offset": 1},
    ]
    for params in queries:
        page = client.get("/models", params=params).json()
        names = {row["name"] for row in page["items"]}
        assert not names & {"alpha-secret-model", "alpha-team-model"}, params
        # Small result sets: the total counts exactly what the pages hold.
        assert page["total"] == page["offset"] + len(page["items"]), params
    assert client.get("/models", params={"search": "alpha"}).json()["total"] == 0
    assert client.get(f"/models/{tenancy.model_private['id']}").status_code == 404
    assert client.get("/models/alpha-team-model").status_code == 404


def test_model_groups_for_tenant_members(tenancy: Tenancy) -> None:
    owner = tenancy.owner_a
    mine = {row["name"] for row in owner.get("/models", params={"group": "mine"}).json()["items"]}
    berth = {row["name"] for row in owner.get("/models", params={"group": "berth"}).json()["items"]}

    assert mine == {"alpha-secret-model", "alpha-team-model"}
    assert {"all-MiniLM-L6-v2", "echo"} <= berth
    assert not mine & berth


def test_other_tenant_sees_no_audit_entry(tenancy: Tenancy) -> None:
    alpha_ids = {
        tenancy.endpoint_a["id"],
        tenancy.model_private["id"],
        tenancy.project_a["id"],
    }
    for client in (tenancy.member_b, tenancy.admin_b):
        entries = client.get("/audit", params={"limit": 500}).json()
        assert not {row["resource_id"] for row in entries["items"]} & alpha_ids
        assert client.get("/audit", params={"tenant": "all"}).json()["total"] == entries["total"]


def test_other_tenant_sees_no_user_or_tenant(tenancy: Tenancy) -> None:
    users = {row["username"] for row in tenancy.member_b.get("/users").json()["items"]}
    tenants = {row["name"] for row in tenancy.member_b.get("/tenants").json()["items"]}

    # The OrgAdmin who created tenant beta became its TenantAdmin.
    assert users == {"admin", "bruno", "bella"}
    assert tenants == {"beta"}
    assert tenancy.member_b.get("/users/olivia").status_code == 404
    assert tenancy.member_b.get("/tenants/alpha").status_code == 404


def test_audit_records_actions_without_secrets(tenancy: Tenancy) -> None:
    key = tenancy.owner_a.post(
        f"/endpoints/{tenancy.endpoint_a['id']}/keys", json={"description": "audited"}
    ).json()
    tenancy.owner_a.post(f"/endpoints/{tenancy.endpoint_a['id']}/keys/{key['id']}/revoke")

    entries = tenancy.admin.get(
        "/audit", params={"tenant": "alpha", "resource_id": key["id"]}
    ).json()["items"]
    everything = tenancy.admin.get("/audit", params={"tenant": "all", "limit": 500}).text

    assert [row["action"] for row in entries] == ["key.revoked", "key.added"]
    assert entries[0]["actor"]["name"] == "olivia"
    assert entries[0]["source_address"] == "127.0.0.1"
    assert key["key"] not in everything
    assert ADMIN_KEY not in everything


def test_audit_takes_address_from_local_proxy(tenancy: Tenancy) -> None:
    # A reverse proxy on the same machine passes the caller's address in X-Forwarded-For.
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    key = tenancy.owner_a.post(
        f"/endpoints/{tenancy.endpoint_a['id']}/keys",
        json={"description": "behind a proxy"},
        headers=forwarded,
    ).json()

    entries = tenancy.admin.get(
        "/audit", params={"tenant": "alpha", "resource_id": key["id"]}
    ).json()["items"]

    assert [row["action"] for row in entries] == ["key.added"]
    assert entries[0]["source_address"] == "203.0.113.7"


def test_audit_filters(tenancy: Tenancy) -> None:
    created = tenancy.admin.get("/audit", params={"tenant": "all", "action": "user.created"}).json()
    by_actor = tenancy.admin.get(
        "/audit", params={"tenant": "all", "actor": "olivia", "action": "endpoint."}
    ).json()

    assert {row["resource_name"] for row in created["items"]} >= {"olivia", "bruno", "bella"}
    assert {row["action"] for row in by_actor["items"]} >= {"endpoint.created", "endpoint.stopped"}


def test_membership_changes_are_audited(tenancy: Tenancy) -> None:
    tenancy.admin_b.put("/tenants/beta/members/bella", json={"role": "TenantAdmin"})
    tenancy.admin_b.put("/tenants/beta/members/bella", json={"role": "User"})

    actions = [
        row["action"]
        for row in tenancy.admin_b.get("/audit", params={"action": "membership."}).json()["items"]
    ]

    assert actions[:2] == ["membership.changed", "membership.changed"]


def test_plain_user_cannot_change_members(tenancy: Tenancy) -> None:
    response = tenancy.member_b.put("/tenants/beta/members/bruno", json={"role": "User"})

    assert response.status_code == 403


def test_password_sign_in_and_session_cookie(tenancy: Tenancy) -> None:
    with httpx.Client(base_url=f"{tenancy.server.url}/api/v1") as browser:
        signed_in = browser.post(
            "/auth/login", json={"username": "bella", "password": "bella-password-123"}
        )
        whoami = browser.get("/whoami")
        foreign = browser.post(
            "/projects", json={"name": "from-elsewhere"}, headers={"Origin": "http://evil.test"}
        )
        browser.post("/auth/logout")
        after = browser.get("/whoami")

    cookie = signed_in.headers["set-cookie"].lower()
    assert signed_in.status_code == 200
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert whoami.json()["user"]["name"] == "bella"
    assert whoami.json()["tenant"]["name"] == "beta"
    assert foreign.status_code == 403
    assert after.status_code == 401


def test_failed_sign_ins_are_rate_limited(tenancy: Tenancy) -> None:
    url = f"{tenancy.server.url}/api/v1/auth/login"
    statuses = [
        httpx.post(url, json={"username": "bruno", "password": "wrong-password"}).status_code
        for _ in range(6)
    ]
    right = httpx.post(url, json={"username": "bruno", "password": "bruno-password-123"})

    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429
    assert right.status_code == 429
    assert int(right.headers["retry-after"]) > 0


def test_platform_keys_shown_once_and_revocable(tenancy: Tenancy) -> None:
    created = tenancy.member_b.post("/users/me/keys", json={"description": "laptop"}).json()
    listed = tenancy.member_b.get("/users/me/keys").json()

    assert created["key"].startswith("berth_pk_")
    assert all("key" not in row for row in listed)
    assert created["key"].startswith(next(r["prefix"] for r in listed if r["id"] == created["id"]))
    with api(tenancy.server, created["key"]) as laptop:
        assert laptop.get("/whoami").status_code == 200
        tenancy.member_b.post(f"/users/me/keys/{created['id']}/revoke").raise_for_status()
        assert laptop.get("/whoami").status_code == 401
    assert tenancy.member_b.get("/users/bruno/keys").status_code == 403


def test_disabled_user_is_locked_out(tenancy: Tenancy) -> None:
    response = tenancy.admin.post(
        "/users", json={"username": "leaving", "tenant": "beta", "create_key": True}
    )
    key = response.json()["api_key"]
    with api(tenancy.server, key) as leaving:
        assert leaving.get("/whoami").status_code == 200
        tenancy.admin.patch("/users/leaving", json={"disabled": True}).raise_for_status()
        response = leaving.get("/whoami")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "user_disabled"
    assert "user 'leaving' is disabled" in response.json()["error"]["message"]


def test_only_org_admin_creates_tenants_and_users(tenancy: Tenancy) -> None:
    assert tenancy.admin_b.post("/tenants", json={"name": "gamma"}).status_code == 403
    assert tenancy.admin_b.post("/users", json={"username": "someone"}).status_code == 403


def test_tenant_rename_and_switch(tenancy: Tenancy) -> None:
    tenancy.admin.post("/tenants", json={"name": "delta"}).raise_for_status()
    tenancy.admin.put("/tenants/delta/members/bella", json={"role": "User"}).raise_for_status()
    tenancy.admin.patch("/tenants/delta", json={"name": "delta-two"}).raise_for_status()

    switched = tenancy.member_b.get("/whoami", headers={"X-Berth-Tenant": "delta-two"}).json()
    default = tenancy.member_b.get("/whoami").json()

    assert switched["tenant"]["name"] == "delta-two"
    assert default["tenant"]["name"] == "beta"
    assert tenancy.member_b.get("/whoami", headers={"X-Berth-Tenant": "alpha"}).status_code == 404


def test_duplicate_tenant_and_user_names(tenancy: Tenancy) -> None:
    assert tenancy.admin.post("/tenants", json={"name": "ALPHA"}).status_code == 409
    assert tenancy.admin.post("/users", json={"username": "Olivia"}).status_code == 409


def test_sharing_off_keeps_shared_endpoints(fresh_server: BerthServer) -> None:
    fresh_server.start()
    with api(fresh_server, ADMIN_KEY) as admin:
        refused = admin.post(
            "/endpoints", json={"name": "early", "model": "echo", "share_with_all_tenants": True}
        )
        admin.patch("/organization", json={"share_with_all_tenants": True}).raise_for_status()
        shared = admin.post(
            "/endpoints", json={"name": "wide", "model": "echo", "share_with_all_tenants": True}
        ).json()
        admin.post("/tenants", json={"name": "other"}).raise_for_status()
        other = admin.post(
            "/users", json={"username": "ola", "tenant": "other", "create_key": True}
        ).json()

        turned_off = admin.patch("/organization", json={"share_with_all_tenants": False}).json()
        with api(fresh_server, other["api_key"]) as outsider:
            still_visible = outsider.get(f"/endpoints/{shared['id']}").status_code
            unshared = admin.patch(
                "/organization",
                json={"share_with_all_tenants": False, "unshare_existing": True},
            ).json()
            hidden = outsider.get(f"/endpoints/{shared['id']}").status_code

    assert refused.status_code == 422
    assert "turned off" in refused.json()["error"]["message"]
    assert [row["id"] for row in turned_off["endpoints_shared"]] == [shared["id"]]
    assert turned_off["unshared"] is False
    assert "stay shared" in turned_off["message"]
    assert still_visible == 200
    assert unshared["unshared"] is True
    assert hidden == 404


def test_endpoint_owner_is_the_creator(tenancy: Tenancy) -> None:
    endpoint = tenancy.owner_a.get(f"/endpoints/{tenancy.endpoint_a['id']}").json()

    assert endpoint["owner"]["name"] == "olivia"


def test_whoami_without_a_tenant(tenancy: Tenancy) -> None:
    body = {"username": "nadia", "create_key": True, "password": "nadia-password-123"}
    created = tenancy.admin.post("/users", json=body)
    assert created.status_code == 201, created.text

    with api(tenancy.server, created.json()["api_key"]) as nadia:
        response = nadia.get("/whoami")

    assert response.status_code == 200, response.text
    assert response.json()["user"]["name"] == "nadia"
    assert response.json()["tenant"] is None


def test_disabled_tenant_cannot_be_default(tenancy: Tenancy) -> None:
    tenancy.admin.post("/tenants", json={"name": "frozen"}).raise_for_status()
    tenancy.admin.put("/tenants/frozen/members/bella", json={"role": "User"}).raise_for_status()
    tenancy.admin.patch("/tenants/frozen", json={"disabled": True}).raise_for_status()

    response = tenancy.member_b.patch("/users/me", json={"default_tenant": "frozen"})

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "default_tenant"
    assert "tenant 'frozen' is disabled" in error["message"]
    assert "`berth tenant enable frozen`" in error["message"]
    assert tenancy.member_b.get("/users/me").json()["default_tenant_id"] is None


def test_sign_in_with_only_disabled_tenants(tenancy: Tenancy) -> None:
    tenancy.admin.post("/tenants", json={"name": "closed"}).raise_for_status()
    body = {"username": "carla", "tenant": "closed", "password": "carla-password-123"}
    tenancy.admin.post("/users", json=body).raise_for_status()
    tenancy.admin.patch("/tenants/closed", json={"disabled": True}).raise_for_status()

    with httpx.Client(base_url=f"{tenancy.server.url}/api/v1") as browser:
        signed_in = browser.post(
            "/auth/login", json={"username": "carla", "password": "carla-password-123"}
        )
        whoami = browser.get("/whoami")

    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["tenant"] is None
    assert (
        "member only of tenant 'closed', which is disabled"
        in (signed_in.json()["no_tenant_reason"])
    )
    assert whoami.json()["tenant"] is None
    assert whoami.json()["no_tenant_reason"] == signed_in.json()["no_tenant_reason"]


def test_disabled_user_sign_in_names_the_reason(tenancy: Tenancy) -> None:
    body = {"username": "dora", "tenant": "beta", "password": "dora-password-123"}
    tenancy.admin.post("/users", json=body).raise_for_status()
    tenancy.admin.patch("/users/dora", json={"disabled": True}).raise_for_status()
    url = f"{tenancy.server.url}/api/v1/auth/login"

    right = httpx.post(url, json={"username": "dora", "password": "dora-password-123"})
    wrong = httpx.post(url, json={"username": "dora", "password": "not-her-password"})

    assert right.status_code == 401
    assert right.json()["error"]["code"] == "user_disabled"
    assert "user 'dora' is disabled" in right.json()["error"]["message"]
    assert "`berth user enable dora`" in right.json()["error"]["message"]
    assert "set-cookie" not in right.headers
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "wrong user name or password"


def test_has_password_only_for_self_and_admins(tenancy: Tenancy) -> None:
    seen_by_member = tenancy.member_b.get("/users/bruno").json()
    listed_by_member = tenancy.member_b.get("/users").json()["items"]
    own = tenancy.member_b.get("/users/me").json()
    seen_by_tenant_admin = tenancy.admin_b.get("/users/bella").json()
    seen_by_org_admin = tenancy.admin.get("/users/bella").json()

    assert seen_by_member["has_password"] is None
    assert {row["username"]: row["has_password"] for row in listed_by_member}["bruno"] is None
    assert own["has_password"] is True
    assert seen_by_tenant_admin["has_password"] is True
    assert seen_by_org_admin["has_password"] is True


def test_default_tenant_hidden_from_others(tenancy: Tenancy) -> None:
    body = {"username": "ezra", "tenant": "beta", "create_key": True}
    created = tenancy.admin.post("/users", json=body)
    assert created.status_code == 201, created.text
    tenancy.admin.put("/tenants/alpha/members/ezra", json={"role": "User"}).raise_for_status()
    tenancy.admin.patch("/users/ezra", json={"default_tenant": "alpha"}).raise_for_status()

    seen_by_member = tenancy.member_b.get("/users/ezra").json()
    with api(tenancy.server, created.json()["api_key"]) as ezra:
        seen_by_self = ezra.get("/users/me").json()

    assert seen_by_member["default_tenant_id"] is None
    assert seen_by_member["default_tenant_hidden"] is True
    assert "alpha" not in str(seen_by_member)
    assert seen_by_self["default_tenant_hidden"] is False
    assert seen_by_self["default_tenant_id"] is not None


def test_revoking_revoked_platform_key(tenancy: Tenancy) -> None:
    created = tenancy.member_b.post("/users/me/keys", json={"description": "old"}).json()

    first = tenancy.member_b.post(f"/users/me/keys/{created['id']}/revoke")
    second = tenancy.member_b.post(f"/users/me/keys/{created['id']}/revoke")
    entries = tenancy.admin.get(
        "/audit", params={"tenant": "all", "resource_id": created["id"]}
    ).json()["items"]

    assert first.status_code == 200
    assert first.json()["already_revoked"] is False
    assert second.status_code == 200
    assert second.json()["already_revoked"] is True
    assert second.json()["revoked_at"] == first.json()["revoked_at"]
    assert [row["action"] for row in entries] == [
        "platform_key.revoked",
        "platform_key.created",
    ]


def sign_in_browser(browser: httpx.Client, username: str, password: str) -> None:
    """Sign in with `browser`, so that it sends a web session cookie of `username`."""
    response = browser.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text


def test_password_change_ends_web_sessions(tenancy: Tenancy) -> None:
    body = {
        "username": "pia",
        "tenant": "beta",
        "create_key": True,
        "password": "pia-password-123",
    }
    created = tenancy.admin.post("/users", json=body)
    assert created.status_code == 201, created.text
    server = tenancy.server

    with (
        api(server) as changing,
        api(server) as other,
        api(server, created.json()["api_key"]) as pia_key,
    ):
        sign_in_browser(changing, "pia", "pia-password-123")
        sign_in_browser(other, "pia", "pia-password-123")
        own_change = changing.patch("/users/me", json={"password": "pia-password-456"})
        changing_after_own = changing.get("/whoami").status_code
        other_after_own = other.get("/whoami")
        key_after_own = pia_key.get("/whoami").status_code

        admin_change = tenancy.admin.patch("/users/pia", json={"password": "pia-password-789"})
        changing_after_admin = changing.get("/whoami").status_code
        key_after_admin = pia_key.get("/whoami").status_code

    old_password = httpx.post(
        f"{server.url}/api/v1/auth/login",
        json={"username": "pia", "password": "pia-password-456"},
    )
    new_password = httpx.post(
        f"{server.url}/api/v1/auth/login",
        json={"username": "pia", "password": "pia-password-789"},
    )
    entries = tenancy.admin.get("/audit", params={"action": "user.password_changed"}).json()
    ended = [
        row["details"].get("ended_web_sessions")
        for row in entries["items"]
        if row["resource_name"] == "pia"
    ]

    assert own_change.status_code == 200, own_change.text
    # Users who change their own password in the browser stay signed in there.
    assert changing_after_own == 200
    assert other_after_own.status_code == 401
    assert other_after_own.json()["error"]["message"] == "your session has ended; sign in again"
    assert admin_change.status_code == 200, admin_change.text
    assert changing_after_admin == 401
    # Platform keys are separate credentials, so a new password leaves them valid.
    assert key_after_own == 200
    assert key_after_admin == 200
    assert old_password.status_code == 401
    assert new_password.status_code == 200
    # Newest first: the OrgAdmin's change ended one session, pia's own change the other.
    assert ended == [1, 1]


def test_disabled_tenant_endpoint_is_read_only(tenancy: Tenancy) -> None:
    admin = tenancy.admin
    admin.post("/tenants", json={"name": "lent"}).raise_for_status()
    admin.put("/tenants/lent/members/bella", json={"role": "User"}).raise_for_status()
    admin.patch("/organization", json={"share_with_all_tenants": True}).raise_for_status()
    try:
        in_lent = {"X-Berth-Tenant": "lent"}
        created = tenancy.member_b.post(
            "/endpoints",
            json={"name": "lent-shared", "model": "echo", "share_with_all_tenants": True},
            headers=in_lent,
        )
        assert created.status_code == 201, created.text
        endpoint_id = created.json()["id"]
        added = tenancy.member_b.post(
            f"/endpoints/{endpoint_id}/keys", json={"description": "app"}, headers=in_lent
        )
        assert added.status_code == 201, added.text
        key_id = added.json()["id"]
        admin.patch("/tenants/lent", json={"disabled": True}).raise_for_status()

        # bella owns the endpoint and now acts in beta, her default tenant.
        owner = tenancy.member_b
        changes = {
            "update": owner.patch(f"/endpoints/{endpoint_id}", json={"description": "new"}),
            "stop": owner.post(f"/endpoints/{endpoint_id}/stop"),
            "restart": owner.post(f"/endpoints/{endpoint_id}/restart"),
            "add key": owner.post(f"/endpoints/{endpoint_id}/keys", json={"description": "x"}),
            "edit key": owner.patch(
                f"/endpoints/{endpoint_id}/keys/{key_id}", json={"description": "y"}
            ),
            "revoke key": owner.post(f"/endpoints/{endpoint_id}/keys/{key_id}/revoke"),
            "delete": owner.delete(f"/endpoints/{endpoint_id}"),
        }
        read = owner.get(f"/endpoints/{endpoint_id}")
        keys = owner.get(f"/endpoints/{endpoint_id}/keys")
        acting_in_lent = owner.get("/whoami", headers=in_lent)
        stopped_by_org_admin = admin.post(f"/endpoints/{endpoint_id}/stop")
        deleted_by_org_admin = admin.delete(f"/endpoints/{endpoint_id}")
    finally:
        admin.patch("/organization", json={"share_with_all_tenants": False}).raise_for_status()

    for action, response in changes.items():
        assert response.status_code == 403, (action, response.text)
        error = response.json()["error"]
        assert error["code"] == "tenant_disabled", action
        assert f"you may not {action.split()[0]}" in error["message"], action
        assert "its tenant 'lent' is disabled" in error["message"], action
        assert "`berth tenant enable lent`" in error["message"], action
    assert read.status_code == 200
    assert read.json()["description"] == ""
    assert read.json()["tenant_disabled"] is True
    assert keys.status_code == 200
    assert {row["status"] for row in keys.json()} == {"Active"}
    assert acting_in_lent.status_code == 403
    assert acting_in_lent.json()["error"]["code"] == "tenant_disabled"
    assert "`berth tenant enable lent`" in acting_in_lent.json()["error"]["message"]
    # OrgAdmins may still change the endpoint, for example to free its instance slots.
    assert stopped_by_org_admin.status_code == 200, stopped_by_org_admin.text
    assert deleted_by_org_admin.status_code == 200, deleted_by_org_admin.text
