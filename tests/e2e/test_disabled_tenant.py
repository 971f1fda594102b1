"""A disabled tenant's endpoints: the gateway rejects their requests while their
instances keep running, and enabling the tenant restores service at once."""

import httpx

from berth.client import Client
from tests.e2e.conftest import chat, wait_live, wait_until
from tests.support import ADMIN_KEY, BerthServer, pid_alive

# Every gateway process reloads its routes at least once a second.
GATEWAY_SYNC_TIMEOUT_S = 5.0


def status_code_becomes(endpoint: dict, key: str, expected: int) -> httpx.Response | None:
    response = chat(endpoint, key)
    return response if response.status_code == expected else None


def test_disabled_tenant_stops_gateway_traffic(fresh_server: BerthServer) -> None:
    fresh_server.start()
    with fresh_server.client() as admin:
        admin.create_tenant("paused")
        admin.set_sharing(True)
        otto_key = admin.create_user("otto", tenant="default", create_key=True)["api_key"]
    with Client(server=fresh_server.url, api_key=ADMIN_KEY, tenant="paused") as admin:
        created = admin.create_endpoint(
            "default", "paused-chat", "echo", share_with_all_tenants=True
        )
        endpoint = wait_live(admin, created["id"])
        key = created["first_key"]
        assert chat(endpoint, key).status_code == 200

        admin.update_tenant("paused", disabled=True)
        rejected = wait_until(
            lambda: status_code_becomes(endpoint, key, 403),
            GATEWAY_SYNC_TIMEOUT_S,
            "the gateway to reject requests to the disabled tenant's endpoint",
        )
        while_disabled = admin.get_endpoint(endpoint["id"])
        with Client(server=fresh_server.url, api_key=otto_key) as other_tenant:
            seen_by_other_tenant = other_tenant.get_endpoint(endpoint["id"])

        admin.update_tenant("paused", disabled=False)
        served = wait_until(
            lambda: status_code_becomes(endpoint, key, 200),
            GATEWAY_SYNC_TIMEOUT_S,
            "the gateway to serve the endpoint again after the tenant was enabled",
        )
        after_enable = admin.get_endpoint(endpoint["id"])

    error = rejected.json()["error"]
    assert error["code"] == "tenant_disabled"
    assert "tenant 'paused' of this endpoint is disabled" in error["message"]
    assert "`berth tenant enable paused`" in error["message"]
    # The instances keep running, so enabling the tenant needs no new deployment.
    assert while_disabled["state"] == "Live"
    # The API output still shows that the endpoint serves no one.
    assert while_disabled["tenant_disabled"] is True
    assert "tenant 'paused' is disabled" in while_disabled["state_reason"]
    assert "403 tenant_disabled" in while_disabled["state_reason"]
    assert seen_by_other_tenant["tenant_disabled"] is True
    assert after_enable["tenant_disabled"] is False
    assert after_enable["state_reason"] == ""
    pids = [row["pid"] for row in while_disabled["instance_list"]]
    assert pids == [row["pid"] for row in endpoint["instance_list"]]
    assert all(pid_alive(pid) for pid in pids)
    # An endpoint shared with all tenants stays visible to them, but serves no one.
    assert seen_by_other_tenant["id"] == endpoint["id"]
    assert served.json()["choices"][0]["message"]["content"] == "hello"
