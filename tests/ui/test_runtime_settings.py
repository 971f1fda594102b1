"""Runtime settings on the endpoint window."""

import pytest
from playwright.sync_api import expect

from tests.support import wait_until
from tests.ui.conftest import OWNER

pytestmark = pytest.mark.ui


def test_details_show_batching(open_page) -> None:
    page = open_page(OWNER)
    response = page.context.request.post(
        "/api/v1/endpoints",
        data={
            "name": "ui-batching",
            "model": "all-MiniLM-L6-v2",
            "runtime_settings": {"max_batch_size": 4, "max_batch_wait_ms": 2.5},
        },
    )
    assert response.status == 201, response.text()
    endpoint = response.json()
    try:
        page.goto(f"/ui/endpoints/{endpoint['id']}")

        expect(page.locator("#endpoint-max-batch-size")).to_have_text("4 texts")
        expect(page.locator("#endpoint-max-batch-wait")).to_have_text("2.5 ms")
        expect(page.locator("#endpoint-runtime-choice")).to_have_count(0)
        expect(page.locator("#endpoint-max-completion-tokens")).to_have_count(0)
        expect(page.locator("#endpoint-context-length")).to_have_count(0)
    finally:
        page.context.request.delete(f"/api/v1/endpoints/{endpoint['id']}")


def test_details_show_runtime_choice(open_page) -> None:
    page = open_page(OWNER)
    response = page.context.request.post(
        "/api/v1/endpoints", data={"name": "ui-runtime", "model": "demo-tiny-llama"}
    )
    assert response.status == 201, response.text()
    endpoint = response.json()
    try:
        page.goto(f"/ui/endpoints/{endpoint['id']}")

        expect(page.locator("#endpoint-runtime-choice")).to_have_text("auto")
        expect(page.locator("#endpoint-max-batch-size")).to_have_text("8 requests")
        expect(page.locator("#endpoint-max-completion-tokens")).to_have_text("4096")
        expect(page.locator("#endpoint-context-length")).to_have_text("model default")

        def instance_ready() -> bool:
            info = page.context.request.get(f"/api/v1/endpoints/{endpoint['id']}").json()
            return any(row["runtime"] for row in info["instance_list"])

        wait_until(instance_ready, 120, "the instance to report its runtime")
        page.reload()
        expect(page.locator(".instance-runtime")).to_contain_text("on transformers")
    finally:
        page.context.request.delete(f"/api/v1/endpoints/{endpoint['id']}")


def test_batch_size_of_one_is_singular(open_page) -> None:
    page = open_page(OWNER)
    response = page.context.request.post(
        "/api/v1/endpoints",
        data={
            "name": "ui-batch-one",
            "model": "all-MiniLM-L6-v2",
            "runtime_settings": {"max_batch_size": 1},
        },
    )
    assert response.status == 201, response.text()
    endpoint = response.json()
    try:
        page.goto(f"/ui/endpoints/{endpoint['id']}")

        expect(page.locator("#endpoint-max-batch-size")).to_have_text("1 text")
    finally:
        page.context.request.delete(f"/api/v1/endpoints/{endpoint['id']}")


def test_pages_have_an_icon(open_page) -> None:
    page = open_page(OWNER)
    icon_url = page.locator('link[rel="icon"]').get_attribute("href")

    icon = page.context.request.get(icon_url)
    favicon = page.context.request.get("/favicon.ico")

    assert icon.status == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert favicon.status == 200
    assert favicon.url.endswith(icon_url)
    assert favicon.body() == icon.body()
