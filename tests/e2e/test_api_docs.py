"""The API reference page works without internet access."""

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import ADMIN_KEY, BerthServer
from tests.ui.conftest import launch_chromium

# Swagger UI's message for a schema whose "openapi" version it cannot read.
RENDER_FAILURE = "Unable to render this definition"


# Module scope keeps Playwright's event loop out of the async tests of other modules.
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from launch_chromium(tmp_path_factory)


def test_api_reference_loads_only_local_files(server: BerthServer) -> None:
    page = httpx.get(f"{server.url}/api/v1/docs", timeout=30)

    assert page.status_code == 200
    assert "swagger-ui" in page.text
    sources = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert sources
    for source in sources:
        assert source.startswith("/api/v1/"), source
        assert httpx.get(f"{server.url}{source}", timeout=30).status_code == 200, source
    assert "url: '/api/v1/openapi.json'" in page.text
    assert "http://" not in page.text
    assert "https://" not in page.text


@pytest.mark.ui
def test_api_reference_renders_operations(server: BerthServer, browser: Any) -> None:
    from playwright.sync_api import expect

    schema = httpx.get(f"{server.url}/api/v1/openapi.json", timeout=30).json()
    operation_count = sum(
        1
        for operations in schema["paths"].values()
        for method in operations
        if method in {"get", "put", "post", "patch", "delete"}
    )
    context = browser.new_context(base_url=server.url)
    requested: list[str] = []
    script_errors: list[str] = []
    try:
        page = context.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.on("pageerror", lambda error: script_errors.append(str(error)))
        page.goto("/api/v1/docs")

        expect(page.locator(".opblock").first).to_be_visible()
        expect(page.locator(".opblock")).to_have_count(operation_count)
        expect(page.locator(".info .title")).to_contain_text("Berth management API")
        web_ui = page.locator(".info .description").get_by_role("link", name="Open the web UI")
        expect(web_ui).to_have_attribute("href", "/ui/")
        expect(page.locator(".opblock-summary-path", has_text="/endpoints").first).to_be_visible()
        assert RENDER_FAILURE not in page.content()

        # The bearer scheme of the schema gives the page an Authorize button, and the
        # curl command of a request sent after it carries the key.
        page.get_by_role("button", name="Authorize").first.click()
        page.locator(".auth-container input").fill(ADMIN_KEY)
        page.locator(".auth-container button[type=submit]").click()
        page.locator(".auth-container .btn-done").click()
        operation = page.locator('.opblock-get:has(.opblock-summary-path[data-path="/projects"])')
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        operation.get_by_role("button", name="Execute").click()
        expect(operation.locator(".curl")).to_contain_text(f"Authorization: Bearer {ADMIN_KEY}")
        expect(
            operation.locator(".live-responses-table tbody .response-col_status").first
        ).to_have_text("200")
    finally:
        context.close()

    assert not script_errors, script_errors
    outside = [url for url in requested if not url.startswith(f"{server.url}/")]
    assert not outside, outside


def test_api_schema_declares_platform_key(server: BerthServer) -> None:
    schema = httpx.get(f"{server.url}/api/v1/openapi.json", timeout=30).json()

    scheme = schema["components"]["securitySchemes"]["platformKey"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    assert schema["paths"]["/projects"]["get"]["security"] == [{"platformKey": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert "security" not in schema["paths"]["/auth/login"]["post"]
