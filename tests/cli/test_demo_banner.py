"""What `berth up --demo` prints: the lines once the demo endpoint is Live, and the hint
for a demo endpoint that was left stopped."""

import pytest

from berth.cli import demo
from berth.cli.demo import DEMO_ENDPOINT, _print_usage, deploy_demo
from berth.client import Client
from tests.cli.conftest import new_user, unique
from tests.support import ADMIN_KEY, BerthServer

ENDPOINT = {
    "id": "00000000-0000-0000-0000-0000000000d1",
    "name": "demo",
    "url": "http://127.0.0.1:8080/endpoints/00000000-0000-0000-0000-0000000000d1",
    "openai_base_url": "http://127.0.0.1:8080/endpoints/00000000-0000-0000-0000-0000000000d1/v1",
}


@pytest.mark.parametrize(("has_password", "hint_shown"), [(False, True), (True, False)])
def test_password_hint_only_without_password(
    capsys: pytest.CaptureFixture[str], has_password: bool, hint_shown: bool
) -> None:
    _print_usage(ENDPOINT, "berth_ek_example", {"username": "admin", "has_password": has_password})

    printed = capsys.readouterr().out
    assert "Web UI: http://127.0.0.1:8080/ui/ (user 'admin'" in printed
    assert ("berth user set-password" in printed) is hint_shown


def test_stopped_demo_endpoint_is_not_waited_for(
    capsys: pytest.CaptureFixture[str], server: BerthServer, client: Client, clean_endpoints: None
) -> None:
    # An Echo endpoint with the demo's name replaces the demo model here.
    endpoint = client.create_endpoint("default", DEMO_ENDPOINT, "echo")
    client.stop_endpoint(endpoint["id"])

    deploy_demo(server.url, ADMIN_KEY)

    printed = capsys.readouterr().out
    assert f"`berth endpoint restart {DEMO_ENDPOINT}`" in printed
    assert "exists and was stopped" in printed
    assert "Deploying" not in printed


def test_demo_of_other_tenant_is_not_reused(
    monkeypatch: pytest.MonkeyPatch, server: BerthServer, client: Client, clean_endpoints: None
) -> None:
    monkeypatch.setattr(demo, "DEMO_MODEL", "echo")
    client.set_sharing(True)
    shared = client.create_endpoint("default", DEMO_ENDPOINT, "echo", share_with_all_tenants=True)
    client.stop_endpoint(shared["id"])
    tenant = unique("demo-tenant")
    client.create_tenant(tenant)
    user_key = new_user(client, unique("demo-user"), tenant)

    try:
        with Client(server=server.url, api_key=user_key) as user_client:
            endpoint, created = demo._find_or_create(user_client)
            user_client.delete_endpoint(endpoint["id"])
    finally:
        client.set_sharing(False, unshare_existing=True)

    assert created is True
    assert endpoint["id"] != shared["id"]
    assert endpoint["tenant"]["name"] == tenant
