"""Creating, watching, editing, stopping, restarting and deleting endpoints in the UI."""

import re
import shutil
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from berth.hub.demo import build_demo_generation_model
from tests.ui.conftest import OWNER, admin_api, check_screen, create_endpoint

pytestmark = pytest.mark.ui

LIVE_TIMEOUT_MS = 30_000
# A Text Generation instance imports torch and transformers before it is ready.
MODEL_LOAD_TIMEOUT_MS = 120_000


def open_default_project(page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Projects").click()
    page.get_by_role("link", name="default", exact=True).click()
    expect(page.get_by_role("heading", name="default", level=1)).to_be_visible()
    # The heading shows before the page's module scripts run, and a click that comes
    # first finds no handler on the buttons. The load event follows those scripts.
    page.wait_for_load_state("load")


def choose_echo_from_model_hub(page, picker) -> None:
    picker.select_option(label="Select from the Model Hub…")
    hub = page.get_by_role("dialog", name="Select from the Model Hub")
    expect(hub).to_be_visible()
    results = hub.locator("#model-hub-results")

    # A filter narrows the list: the language models include a base model, which
    # cannot be chosen.
    hub.get_by_label("Field of application").select_option("Language")
    expect(results.get_by_text("3 models")).to_be_visible()
    expect(hub.get_by_role("radio", name="demo-tiny-llama-base")).to_be_disabled()

    hub.get_by_label("Field of application").select_option("")
    hub.get_by_label("ML App").select_option(label="Echo")
    hub.get_by_label("Search").fill("ech")
    expect(results.get_by_text("1 model", exact=True)).to_be_visible()
    hub.get_by_role("radio", name="echo").check()
    hub.get_by_role("button", name="Use model").click()
    expect(hub).to_be_hidden()


def test_create_endpoint_through_dialog(open_page) -> None:
    page = open_page(OWNER)
    open_default_project(page)
    expect(page.get_by_text("Berth serves endpoints only")).to_be_visible()

    page.get_by_role("button", name="New endpoint").click()
    dialog = page.get_by_role("dialog", name="Add an endpoint")
    expect(dialog.get_by_text("Shared with all users of default")).to_be_visible()

    dialog.get_by_role("button", name="Add an endpoint").click()
    expect(dialog.locator("#add-model-error")).to_have_text("Choose a model for the endpoint.")

    picker = dialog.get_by_label("Select model")
    choose_echo_from_model_hub(page, picker)
    expect(picker.locator("option:checked")).to_have_text("echo · Echo")

    # The API names the invalid field, and its message appears next to that field.
    dialog.get_by_role("button", name="Add an endpoint").click()
    expect(dialog.locator("#add-name-error")).to_have_text("Name must not be empty.")
    dialog.get_by_label("Endpoint name").fill("ui-first")
    dialog.get_by_label("Number of instances").fill("99")
    dialog.get_by_role("button", name="Add an endpoint").click()
    expect(dialog.locator("#add-instances-error")).to_contain_text("out of range")

    dialog.get_by_label("Number of instances").fill("1")
    dialog.get_by_role("button", name="Add an endpoint").click()
    expect(page).to_have_url(re.compile(r"/ui/endpoints/[0-9a-f-]{36}$"))
    expect(page.get_by_role("heading", name="ui-first", level=1)).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("queued for deployment")

    # The status turns Live by itself: the page is not reloaded, so a mark set now stays.
    page.evaluate("() => { window.stillTheSamePage = true; }")
    expect(page.locator("#endpoint-status")).to_have_text("Live", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("() => window.stillTheSamePage === true")
    expect(page.locator(".instance-list")).to_contain_text("Ready")

    url = page.locator("#endpoint-url").inner_text()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/endpoints/[0-9a-f-]{36}", url)
    page.get_by_role("button", name="Copy the URL").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == url

    # A second endpoint of the same name is rejected, next to the name field.
    page.get_by_role("link", name="default").click()
    page.get_by_role("button", name="New endpoint").click()
    dialog.get_by_label("Endpoint name").fill("UI-First")
    dialog.get_by_label("Select model").select_option(label="echo · Echo")
    dialog.get_by_role("button", name="Add an endpoint").click()
    expect(dialog.locator("#add-name-error")).to_contain_text("already exists in project")


def test_add_dialog_shows_every_field_error(open_page) -> None:
    page = open_page(OWNER)
    open_default_project(page)
    page.get_by_role("button", name="New endpoint").click()
    dialog = page.get_by_role("dialog", name="Add an endpoint")
    name = dialog.get_by_label("Endpoint name")
    picker = dialog.get_by_label("Select model")
    instances = dialog.get_by_label("Number of instances")
    submit = dialog.get_by_role("button", name="Add an endpoint")

    # The browser checks name, model and instance count together.
    name.fill("my endpoint!")
    instances.fill("0")
    submit.click()
    expect(dialog.locator("#add-name-error")).to_have_text(
        "Name 'my endpoint!' is invalid: start with a letter or digit and use only "
        "letters, digits, '-', '_' and '.'."
    )
    expect(dialog.locator("#add-model-error")).to_have_text("Choose a model for the endpoint.")
    expect(dialog.locator("#add-instances-error")).to_have_text(
        "Instances 0 is out of range: use 1 to 16."
    )
    for field in (name, picker, instances):
        expect(field).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    expect(name).to_have_value("my endpoint!")
    expect(instances).to_have_value("0")

    picker.select_option(label="echo · Echo")
    instances.fill("1.5")
    submit.click()
    expect(dialog.locator("#add-instances-error")).to_have_text(
        "Enter a whole number of instances, not 1.5."
    )
    expect(dialog.locator("#add-name-error")).to_contain_text("'my endpoint!' is invalid")
    expect(dialog.locator("#add-model-error")).to_have_text("")
    expect(picker).not_to_have_attribute("aria-invalid", "true")

    # Values that pass the browser's checks but not the API's: a name in the form of an
    # ID, and an instance count above a limit that the page holds out of date. Both of
    # the API's errors appear, each next to its field.
    id_name = str(uuid.uuid4())
    name.fill(id_name)
    instances.evaluate("(input) => { input.max = '1000'; }")
    instances.fill("999")
    submit.click()
    expect(dialog.locator("#add-name-error")).to_contain_text("has the form of an ID")
    expect(dialog.locator("#add-instances-error")).to_contain_text("Instances 999 is out of range")
    expect(dialog.locator("#add-model-error")).to_have_text("")
    expect(dialog.locator('[data-error-for="form"]')).to_have_text("")
    expect(name).to_be_focused()
    expect(name).to_have_value(id_name)
    expect(instances).to_have_value("999")
    expect(picker.locator("option:checked")).to_have_text("echo · Echo")
    assert page.context.request.get(f"/api/v1/endpoints/{id_name}").status == 404


def test_update_dialog_shows_every_field_error(open_page) -> None:
    page = open_page(OWNER)
    endpoint = create_endpoint(page, "ui-update-errors")
    page.goto(f"/ui/endpoints/{endpoint['id']}")
    page.get_by_role("button", name="Edit").click()
    dialog = page.get_by_role("dialog", name=re.compile("Update the endpoint"))
    description = dialog.get_by_label("Description")
    picker = dialog.get_by_label("Select model")
    instances = dialog.get_by_label("Number of instances")

    description.fill("kept after errors")
    picker.select_option(value="")
    instances.fill("0")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog.locator("#update-model-error")).to_have_text("Choose a model for the endpoint.")
    expect(dialog.locator("#update-instances-error")).to_have_text(
        "Instances 0 is out of range: use 1 to 16."
    )
    expect(picker).to_be_focused()
    expect(description).to_have_value("kept after errors")
    expect(instances).to_have_value("0")
    stored = page.context.request.get(f"/api/v1/endpoints/{endpoint['id']}").json()
    assert stored["description"] == ""

    page.context.request.delete(f"/api/v1/endpoints/{endpoint['id']}")


def test_edit_stop_restart_delete_from_endpoint_window(open_page) -> None:
    page = open_page(OWNER)
    endpoint = create_endpoint(page, "ui-lifecycle")
    page.goto(f"/ui/endpoints/{endpoint['id']}")
    status = page.locator("#endpoint-status")
    expect(status).to_have_text("Live", timeout=LIVE_TIMEOUT_MS)

    page.get_by_role("button", name="Edit").click()
    dialog = page.get_by_role("dialog", name=re.compile("Update the endpoint"))
    expect(dialog.get_by_label("Select model").locator("option:checked")).to_have_text(
        "echo · Echo"
    )
    dialog.get_by_label("Description").fill("two copies")
    dialog.get_by_label("Number of instances").fill("2")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#endpoint-instances")).to_have_text("2")
    expect(page.locator("#endpoint-description")).to_have_text("two copies")
    expect(page.locator(".instance-list .instance-ready")).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    expect(status).to_have_text("Live")

    page.get_by_role("button", name="Stop").click()
    alert = page.get_by_role("alertdialog", name="Stop endpoint ui-lifecycle?")
    expect(alert).to_contain_text("Model echo (Echo) on 2 instances")
    expect(alert.get_by_role("listitem")).to_have_count(3)
    alert.get_by_role("button", name="Yes, stop it").click()
    expect(status).to_have_text("Stopped", timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)

    page.get_by_role("button", name="Restart").click()
    expect(page.get_by_role("status").first).to_contain_text("is restarting")
    expect(status).to_have_text("Live", timeout=LIVE_TIMEOUT_MS)

    page.get_by_role("button", name="Delete").click()
    alert = page.get_by_role("alertdialog", name="Delete endpoint ui-lifecycle?")
    expect(alert).to_contain_text("ui-lifecycle in project default, serving model echo")
    alert.get_by_role("button", name="Yes, delete it").click()
    expect(page).to_have_url(re.compile(r"/ui/projects/[0-9a-f-]{36}$"))
    expect(page.get_by_role("status").first).to_contain_text("marked for deletion")
    expect(page.get_by_role("link", name="ui-lifecycle")).to_have_count(0)


def test_update_conflict_then_save_again(open_page) -> None:
    page = open_page(OWNER)
    endpoint = create_endpoint(page, "ui-conflict")
    page.goto(f"/ui/endpoints/{endpoint['id']}")
    page.get_by_role("button", name="Edit").click()
    dialog = page.get_by_role("dialog", name=re.compile("Update the endpoint"))

    # Someone else changes the endpoint while the dialog is open.
    response = page.context.request.patch(
        f"/api/v1/endpoints/{endpoint['id']}", data={"description": "changed elsewhere"}
    )
    assert response.ok, response.text()

    dialog.get_by_label("Description").fill("mine")
    dialog.get_by_role("button", name="Save changes").click()
    alert = dialog.get_by_role("alert")
    expect(alert).to_contain_text("someone else changed it: it now serves echo on 1 instance")
    expect(alert).to_contain_text("Save again to apply your settings")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Description")).to_have_value("mine")

    # The dialog took the new version, so the second Save applies the user's text.
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog).to_be_hidden()
    saved = page.context.request.get(f"/api/v1/endpoints/{endpoint['id']}").json()
    assert saved["description"] == "mine"


def test_actions_menu_of_endpoints_table(open_page) -> None:
    page = open_page(OWNER)
    endpoint = create_endpoint(page, "ui-table")
    page.goto(f"/ui/projects/{endpoint['project']['id']}")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="ui-table"))
    expect(row.locator(".status")).to_have_text("Live", timeout=LIVE_TIMEOUT_MS)
    expect(row).to_contain_text(OWNER)

    row.get_by_role("button", name="Actions for ui-table").click()
    page.get_by_role("button", name="Edit", exact=True).click()
    dialog = page.get_by_role("dialog", name=re.compile("Update the endpoint"))
    expect(dialog.get_by_label("Number of instances")).to_have_value("1")
    dialog.get_by_role("button", name="Cancel").click()

    row.get_by_role("button", name="Actions for ui-table").click()
    page.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_role("alertdialog").get_by_role("button", name="Yes, stop it").click()
    expect(row.locator(".status")).to_have_text("Stopped", timeout=LIVE_TIMEOUT_MS)

    row.get_by_role("button", name="Actions for ui-table").click()
    page.get_by_role("button", name="Restart", exact=True).click()
    expect(row.locator(".status")).to_have_text("Live", timeout=LIVE_TIMEOUT_MS)

    row.get_by_role("button", name="Actions for ui-table").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_role("alertdialog").get_by_role("button", name="Yes, delete it").click()
    expect(page.get_by_role("link", name="ui-table")).to_have_count(0)


def test_share_settings_follow_organization_setting(open_page, server) -> None:
    page = open_page(OWNER)
    open_default_project(page)
    page.get_by_role("button", name="New endpoint").click()
    dialog = page.get_by_role("dialog", name="Add an endpoint")
    expect(dialog.get_by_text("Shared with all users of default")).to_be_visible()
    expect(dialog.get_by_label("Share settings")).to_have_count(0)

    with admin_api(server) as admin:
        admin.patch("/organization", json={"share_with_all_tenants": True}).raise_for_status()
        try:
            page.reload()
            page.get_by_role("button", name="New endpoint").click()
            share = dialog.get_by_label("Share settings")
            expect(share.locator("option")).to_have_text(
                ["Share with default", "Share with all tenants"]
            )
            expect(dialog.get_by_text("Shared with all users of default")).to_have_count(0)
        finally:
            admin.patch("/organization", json={"share_with_all_tenants": False})


def test_dashboard_lists_live_endpoints(open_page) -> None:
    page = open_page(OWNER)
    live = create_endpoint(page, "ui-dash-live")
    stopped = create_endpoint(page, "ui-dash-stopped")
    assert page.context.request.post(f"/api/v1/endpoints/{stopped['id']}/stop").ok
    page.goto("/ui/")

    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="ui-dash-live"))
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(row.locator(".status")).to_have_text("Live")
    expect(row).to_contain_text(live["url"])
    expect(page.get_by_role("link", name="ui-dash-stopped")).to_have_count(0)
    expect(page.get_by_text(re.compile(r"other endpoints? (is|are) not Live"))).to_be_visible()

    row.get_by_role("link", name="ui-dash-live").click()
    expect(page.get_by_role("heading", name="ui-dash-live", level=1)).to_be_visible()


def test_endpoint_window_names_rollout_models(open_page, server, tmp_path: Path) -> None:
    model = "ui-rolling-lm"
    demo = build_demo_generation_model(tmp_path / "demo")
    main = Path(shutil.copytree(demo, tmp_path / "main"))
    v2 = Path(shutil.copytree(demo, tmp_path / "v2"))
    with admin_api(server) as admin:
        for checkpoint, folder in (("main", main), ("v2", v2)):
            imported = admin.post(
                "/models/import",
                json={
                    "path": str(folder),
                    "name": model,
                    "checkpoint": checkpoint,
                    "link": True,
                    "sharing": "tenant",
                },
            )
            assert imported.status_code == 201, imported.text
    page = open_page(OWNER)
    endpoint = create_endpoint(page, "ui-rolling", model=f"{model}:main")
    try:
        page.goto(f"/ui/endpoints/{endpoint['id']}")
        expect(page.locator("#endpoint-status")).to_have_text("Live", timeout=MODEL_LOAD_TIMEOUT_MS)
        expect(page.locator("#endpoint-rollout")).to_have_count(0)

        # Checkpoint v2's files go missing, so its new instance cannot start and the old
        # instance serves on: the update stays in progress.
        v2.rename(tmp_path / "moved")
        response = page.context.request.patch(
            f"/api/v1/endpoints/{endpoint['id']}", data={"model": f"{model}:v2"}
        )
        assert response.ok, response.text()

        expect(page.locator("#endpoint-model")).to_have_text(f"{model} / v2")
        expect(page.locator("#endpoint-rollout")).to_have_text(
            f"Rolling update: 1 instance still serves model {model} (checkpoint main) "
            "until 1 new instance of checkpoint v2 is ready.",
            timeout=LIVE_TIMEOUT_MS,
        )
        expect(page.locator(".instance-list .instance-model")).to_have_text(
            [f"serves {model} / main"]
        )
        expect(page.locator(".instance-list")).to_contain_text(f"serves {model} / main on ")
        expect(page.get_by_text("(0 new ready, 1 old serving)")).to_be_visible()
        expect(page.locator(".instance-list")).to_contain_text(
            "are unavailable", timeout=LIVE_TIMEOUT_MS
        )
        # The parts of an instance's line stay separate words.
        expect(page.locator(".instance-list")).to_contain_text(
            re.compile(r"restarted \d+ times? \S"), timeout=LIVE_TIMEOUT_MS
        )
        check_screen(page, "endpoint-rolling-update")
    finally:
        page.context.request.delete(f"/api/v1/endpoints/{endpoint['id']}")
