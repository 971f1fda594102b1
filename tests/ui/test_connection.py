"""The notice that a page shows while its polls cannot reach the Berth server."""

import pytest
from playwright.sync_api import expect

from tests.support import BerthServer
from tests.ui.conftest import BLOCKING_IMPACTS, DESKTOP, OWNER, PASSWORD, _create_users, run_axe

pytestmark = pytest.mark.ui


@pytest.fixture
def own_server(tmp_path):
    """A server of this test alone, because the test stops and starts it."""
    berth = BerthServer(tmp_path / "home").start()
    _create_users(berth.url)
    yield berth
    berth.stop()


def test_notice_while_server_is_down(browser, own_server) -> None:
    context = browser.new_context(base_url=own_server.url, viewport=DESKTOP)
    try:
        response = context.request.post(
            "/api/v1/auth/login", data={"username": OWNER, "password": PASSWORD}
        )
        assert response.ok, response.text()
        page = context.new_page()
        page.goto("/ui/")
        notice = page.locator("#connection-notice")
        expect(page.locator("#live-endpoints")).to_be_attached()
        expect(notice).to_be_hidden()

        own_server.stop()
        # The dashboard polls every 10 s while nothing changes state.
        expect(notice).to_be_visible(timeout=30_000)
        expect(notice).to_have_text(
            "Cannot reach the Berth server, retrying. What this page shows may be out of date."
        )
        expect(notice).to_have_attribute("role", "alert")
        assert not [v for v in run_axe(page) if v["impact"] in BLOCKING_IMPACTS]

        own_server.start()
        expect(notice).to_be_hidden(timeout=30_000)
        expect(page).to_have_url(f"{own_server.url}/ui/")
    finally:
        context.close()
