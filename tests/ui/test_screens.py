"""Every screen at desktop and phone width: a screenshot for people to look at, and
axe-core with no serious or critical violation."""

import re

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import (
    MEMBER,
    OWNER,
    PASSWORD,
    TRAVELLER,
    admin_api,
    check_screen,
    create_endpoint,
)

pytestmark = pytest.mark.ui


# An OrgAdmin that this file creates, for the screens that only OrgAdmins see.
ORG_ADMIN = "olga"


def test_screens_pass_axe_at_both_widths(open_page, server) -> None:
    page = open_page(OWNER)
    endpoint = create_endpoint(page, "ui-screens")
    page.context.request.post(
        f"/api/v1/endpoints/{endpoint['id']}/keys", data={"description": "web shop"}
    )
    project_path = f"/ui/projects/{endpoint['project']['id']}"
    endpoint_path = f"/ui/endpoints/{endpoint['id']}"

    page.goto(endpoint_path)
    expect(page.locator("#endpoint-status")).to_have_text("Live", timeout=30_000)
    page.get_by_label("Message").fill("Is this thing on?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".message-assistant .message-text")).to_have_attribute("data-done", "true")
    check_screen(page, "endpoint")

    page.get_by_role("button", name="Edit").click()
    check_screen(page, "endpoint-update-dialog")
    page.get_by_label("Select model").select_option(label="Select from the Model Hub…")
    expect(page.locator("#model-hub-results table")).to_be_visible()
    check_screen(page, "model-hub-dialog")
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Stop").click()
    check_screen(page, "endpoint-stop-alert")
    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Delete").click()
    check_screen(page, "endpoint-delete-alert")
    page.get_by_role("button", name="Cancel").click()

    page.get_by_role("button", name="Add new").click()
    check_screen(page, "key-add-dialog")
    page.get_by_role("button", name="Cancel").click()
    row = page.locator(".keys-table tbody tr").filter(has_text="web shop")
    row.get_by_role("button", name="Actions for the key web shop").click()
    page.locator(".menu-items:popover-open").get_by_role("button", name="Edit").click()
    check_screen(page, "key-edit-dialog")
    page.get_by_role("button", name="Cancel").click()
    row.get_by_role("button", name="Actions for the key web shop").click()
    page.locator(".menu-items:popover-open").get_by_role("button", name="Revoke").click()
    check_screen(page, "key-revoke-confirmation")
    page.get_by_role("button", name="Cancel").click()

    page.goto("/ui/")
    expect(page.get_by_role("link", name="ui-screens")).to_be_visible()
    check_screen(page, "dashboard")

    page.goto("/ui/projects")
    check_screen(page, "projects")
    page.get_by_role("button", name="New project").click()
    check_screen(page, "project-new-dialog")

    model = {"name": "ui-screens-model", "ml_app": "echo", "field_of_application": "Testing"}
    response = page.context.request.post("/api/v1/models", data=model)
    assert response.status == 201, response.text()
    page.goto("/ui/models")
    card = page.get_by_role("article", name="ui-screens-model")
    expect(card).to_be_visible()
    check_screen(page, "model-hub")
    # Only an OrgAdmin may import, so an OrgAdmin's page shows the import dialog.
    with admin_api(server) as admin:
        body = {
            "username": ORG_ADMIN,
            "password": PASSWORD,
            "tenant": "default",
            "role": "User",
            "is_org_admin": True,
        }
        admin.post("/users", json=body).raise_for_status()
    admin_page = open_page(ORG_ADMIN, "/ui/models")
    admin_page.get_by_role("button", name="Import model").click()
    check_screen(admin_page, "model-import-dialog")
    dialog = admin_page.get_by_role("dialog", name="Import a model")
    dialog.get_by_label("Path on the Berth server").fill("/no/such/model")
    dialog.get_by_label("Model name").fill("ui-screens-import")
    dialog.get_by_role("button", name="Import").click()
    expect(dialog.locator("#import-path-error")).to_contain_text("does not exist")
    check_screen(admin_page, "model-import-error")
    dialog.get_by_role("button", name="Cancel").click()
    card.get_by_role("button", name="Delete model ui-screens-model").click()
    check_screen(page, "model-delete-alert")
    page.get_by_role("alertdialog").get_by_role("button", name="Yes, delete it").click()
    expect(card).to_have_count(0)

    page.goto(project_path)
    check_screen(page, "project")
    page.get_by_role("button", name="New endpoint").click()
    check_screen(page, "endpoint-add-dialog")

    page.goto("/ui/endpoints/00000000-0000-0000-0000-000000000000")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    check_screen(page, "not-found")

    member = open_page(MEMBER, endpoint_path)
    expect(member.get_by_role("heading", name="ui-screens", level=1)).to_be_visible()
    check_screen(member, "endpoint-as-member")

    traveller = open_page(TRAVELLER, "/ui/projects")
    expect(traveller.get_by_label("Tenant")).to_be_visible()
    check_screen(traveller, "projects-with-tenant-switcher")


def test_new_project_opens_its_window(open_page) -> None:
    page = open_page(OWNER, "/ui/projects")
    page.get_by_role("button", name="New project").click()
    dialog = page.get_by_role("dialog", name="New project")
    dialog.get_by_label("Project name").fill("default")
    dialog.get_by_role("button", name="Create project").click()
    expect(dialog.locator("#project-name-error")).to_contain_text("already exists")

    dialog.get_by_label("Project name").fill("ui-research")
    dialog.get_by_label("Description").fill("Experiments with small models")
    dialog.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(re.compile(r"/ui/projects/[0-9a-f-]{36}$"))
    expect(page.get_by_role("heading", name="ui-research", level=1)).to_be_visible()
    expect(page.get_by_text("This project has no endpoints yet")).to_be_visible()
