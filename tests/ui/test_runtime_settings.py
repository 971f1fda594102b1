"""Runtime settings on the endpoint window."""

import re

import pytest
from playwright.sync_api import expect

from tests.support import wait_until
from tests.ui.conftest import OWNER, check_screen, create_endpoint

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


def open_edit_dialog(page, endpoint_id: str):
    # goto returns after the load event, so the page's scripts have wired the buttons.
    page.goto(f"/ui/endpoints/{endpoint_id}")
    page.get_by_role("button", name="Edit").click()
    return page.get_by_role("dialog", name=re.compile("Update the endpoint"))


def test_edit_dialog_changes_batching(open_page) -> None:
    page = open_page(OWNER)
    response = page.context.request.post(
        "/api/v1/endpoints",
        data={
            "name": "ui-edit-batching",
            "model": "all-MiniLM-L6-v2",
            "runtime_settings": {"max_batch_size": 4},
        },
    )
    assert response.status == 201, response.text()
    endpoint = response.json()
    try:
        dialog = open_edit_dialog(page, endpoint["id"])
        settings = dialog.get_by_role("group", name="Runtime settings")
        batch_size = settings.get_by_label("Max batch size")
        batch_wait = settings.get_by_label("Max batch wait")
        note = settings.locator("[data-rollout-note]")

        expect(batch_size).to_have_value("4")
        expect(batch_wait).to_have_value("")
        expect(settings.locator("#update-setting-max_batch_size-hint")).to_contain_text(
            "1 to 1024. Server default: 32."
        )
        expect(settings.locator("#update-setting-max_batch_wait_ms-hint")).to_contain_text(
            "0 to 1000 ms. Server default: 0."
        )
        expect(settings.get_by_label("Runtime", exact=True)).to_be_hidden()
        expect(settings.get_by_label("Max completion tokens")).to_be_hidden()
        expect(note).to_be_hidden()

        settings.get_by_role("button", name="Use default max batch size").click()
        batch_wait.fill("5")
        expect(batch_size).to_have_value("")
        expect(note).to_have_text(
            re.compile(r"^Saving starts a rolling update because max batch size, max batch wait")
        )
        check_screen(page, "endpoint-settings-dialog")
        dialog.get_by_role("button", name="Save changes").click()

        expect(dialog).to_be_hidden()
        expect(page.locator("#endpoint-max-batch-size")).to_have_text("32 texts")
        expect(page.locator("#endpoint-max-batch-wait")).to_have_text("5 ms")
    finally:
        page.context.request.delete(f"/api/v1/endpoints/{endpoint['id']}")


def test_edit_dialog_shows_setting_error(open_page) -> None:
    page = open_page(OWNER)
    endpoint = create_endpoint(page, "ui-edit-tokens", model="demo-tiny-llama")
    try:
        dialog = open_edit_dialog(page, endpoint["id"])
        settings = dialog.get_by_role("group", name="Runtime settings")
        tokens = settings.get_by_label("Max completion tokens")

        expect(tokens).to_have_value("")
        expect(settings.locator("#update-setting-max_completion_tokens-hint")).to_contain_text(
            "1 to 1048576 tokens. Server default: 4096."
        )
        expect(settings.get_by_label("Runtime", exact=True).locator("option:checked")).to_have_text(
            "Server default (auto)"
        )
        expect(settings.locator("#update-setting-context_length-hint")).to_contain_text(
            "16 to 1048576 tokens. Server default: the model's trained length"
        )
        expect(settings.get_by_label("Max batch wait")).to_be_hidden()

        tokens.fill("2000000")
        dialog.get_by_role("button", name="Save changes").click()

        expect(settings.locator("#update-setting-max_completion_tokens-error")).to_contain_text(
            "is out of range: use 1 to 1048576"
        )
        expect(tokens).to_have_attribute("aria-invalid", "true")
        expect(dialog.locator('[data-error-for="form"]')).to_have_text("")
        stored = page.context.request.get(f"/api/v1/endpoints/{endpoint['id']}").json()
        assert stored["runtime_settings"]["max_completion_tokens"] == 4096
    finally:
        page.context.request.delete(f"/api/v1/endpoints/{endpoint['id']}")


def test_add_dialog_sets_batch_size(open_page) -> None:
    page = open_page(OWNER, "/ui/projects")
    page.get_by_role("link", name="default", exact=True).click()
    # The button has its handler once the page's module scripts have run.
    page.wait_for_load_state("load")
    page.get_by_role("button", name="New endpoint").click()
    dialog = page.get_by_role("dialog", name="Add an endpoint")
    settings = dialog.get_by_role("group", name="Runtime settings")
    expect(settings).to_be_hidden()

    dialog.get_by_label("Endpoint name").fill("ui-add-batching")
    dialog.get_by_label("Select model").select_option(label="all-MiniLM-L6-v2 · Text Embedding")
    expect(settings.get_by_label("Max completion tokens")).to_be_hidden()
    settings.get_by_label("Max batch size").fill("2000")
    dialog.get_by_role("button", name="Add an endpoint").click()
    expect(settings.locator("#add-setting-max_batch_size-error")).to_contain_text("1024")

    settings.get_by_label("Max batch size").fill("16")
    dialog.get_by_role("button", name="Add an endpoint").click()
    expect(page).to_have_url(re.compile(r"/ui/endpoints/[0-9a-f-]{36}$"))
    endpoint_id = page.url.rsplit("/", 1)[1]
    try:
        expect(page.locator("#endpoint-max-batch-size")).to_have_text("16 texts")
        expect(page.locator("#endpoint-max-batch-wait")).to_have_text("0 ms")
    finally:
        page.context.request.delete(f"/api/v1/endpoints/{endpoint_id}")


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
