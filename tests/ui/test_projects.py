"""Renaming, describing and deleting a project in the project window and from the
projects list, and who is offered those actions."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import MEMBER, OWNER, PASSWORD, admin_api, check_screen

pytestmark = pytest.mark.ui


def unique(name: str) -> str:
    """Return `name` with a random suffix, since every test shares one server."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


def create_project(page, name: str, description: str = "") -> dict:
    """Create a project through the REST API with the page's session cookie."""
    response = page.context.request.post(
        "/api/v1/projects", data={"name": name, "description": description}
    )
    assert response.status == 201, response.text()
    return response.json()


def create_endpoint_in(page, project: dict, name: str) -> dict:
    response = page.context.request.post(
        "/api/v1/endpoints",
        data={"project": project["id"], "name": name, "model": "echo", "instances": 1},
    )
    assert response.status == 201, response.text()
    return response.json()


def test_project_rename_and_describe(open_page) -> None:
    page = open_page(OWNER)
    old_name, new_name = unique("ui-before"), unique("ui-after")
    project = create_project(page, old_name, "first text")
    page.goto(f"/ui/projects/{project['id']}")

    page.get_by_role("button", name="Edit project").click()
    dialog = page.get_by_role("dialog", name=f"Edit project {old_name}")
    name = dialog.get_by_label("Project name")
    expect(name).to_have_value(old_name)
    expect(dialog.get_by_label("Description")).to_have_value("first text")
    check_screen(page, "project-edit-dialog")

    name.fill("bad name!")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog.locator("#project-edit-name-error")).to_contain_text("is invalid")
    expect(name).to_be_focused()

    name.fill("default")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog.locator("#project-edit-name-error")).to_contain_text("already exists")

    name.fill(new_name)
    dialog.get_by_label("Description").fill("second text")
    dialog.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("heading", name=new_name, level=1)).to_be_visible()
    expect(page.get_by_role("status").first).to_have_text(
        f"Project {old_name} was renamed to {new_name}."
    )
    expect(page.locator("#main .lead")).to_have_text("second text")
    saved = page.context.request.get(f"/api/v1/projects/{project['id']}").json()
    assert saved["name"] == new_name
    assert saved["description"] == "second text"
    assert saved["version"] == 2


def test_project_edit_after_other_change(open_page, server) -> None:
    page = open_page(OWNER)
    project = create_project(page, unique("ui-raced"), "first text")
    page.goto(f"/ui/projects/{project['id']}")
    with admin_api(server) as admin:
        admin.patch(
            f"/projects/{project['id']}", json={"description": "changed elsewhere"}
        ).raise_for_status()

    # The dialog reads the project when it opens, so it shows the change of version 2.
    page.get_by_role("button", name="Edit project").click()
    dialog = page.get_by_role("dialog", name=f"Edit project {project['name']}")
    description = dialog.get_by_label("Description")
    expect(description).to_have_value("changed elsewhere")

    description.fill("my text")
    with admin_api(server) as admin:
        admin.patch(
            f"/projects/{project['id']}", json={"description": "changed again"}
        ).raise_for_status()
    dialog.get_by_role("button", name="Save changes").click()

    expect(dialog.locator('[data-error-for="form"]')).to_have_text(
        "While you edited this project, someone else changed it. "
        'Its description is now "changed again". '
        "Save again to apply your edit over it, or Cancel to keep it."
    )
    expect(description).to_have_value("my text")
    saved = page.context.request.get(f"/api/v1/projects/{project['id']}").json()
    assert saved["description"] == "changed again"

    dialog.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status").first).to_have_text(f"Project {project['name']} was updated.")
    expect(page.locator("#main .lead")).to_have_text("my text")
    saved = page.context.request.get(f"/api/v1/projects/{project['id']}").json()
    assert saved["description"] == "my text"
    assert saved["version"] == 4


def test_project_delete_needs_no_endpoints(open_page) -> None:
    page = open_page(OWNER)
    project = create_project(page, unique("ui-doomed"))
    endpoint = create_endpoint_in(page, project, "ui-blocker")
    page.goto(f"/ui/projects/{project['id']}")

    page.get_by_role("button", name="Delete project").click()
    alert = page.get_by_role("alertdialog", name=f"Delete project {project['name']}?")
    expect(alert).to_contain_text("still contains 1 endpoint, stopped ones included")
    expect(alert.get_by_role("button", name="Yes, delete it")).to_be_hidden()
    check_screen(page, "project-delete-blocked-alert")
    alert.get_by_role("button", name="Cancel").click()

    response = page.context.request.delete(f"/api/v1/endpoints/{endpoint['id']}")
    assert response.ok, response.text()
    page.reload()
    page.get_by_role("button", name="Delete project").click()
    expect(alert).to_contain_text("its name becomes free for a new project")
    check_screen(page, "project-delete-alert")
    alert.get_by_role("button", name="Yes, delete it").click()

    expect(page).to_have_url(re.compile(r"/ui/projects$"))
    expect(page.get_by_role("status").first).to_have_text(f"Project {project['name']} was deleted.")
    expect(page.get_by_role("link", name=project["name"], exact=True)).to_have_count(0)


def test_project_delete_rejected_after_add(open_page) -> None:
    page = open_page(OWNER)
    project = create_project(page, unique("ui-filled"))
    page.goto(f"/ui/projects/{project['id']}")
    page.get_by_role("button", name="Delete project").click()
    alert = page.get_by_role("alertdialog", name=f"Delete project {project['name']}?")
    expect(alert.get_by_role("button", name="Yes, delete it")).to_be_visible()

    # An endpoint added after the dialog opened makes the API reject the delete.
    create_endpoint_in(page, project, "ui-late")
    alert.get_by_role("button", name="Yes, delete it").click()

    expect(alert.locator('[data-error-for="form"]')).to_contain_text(
        f"Project '{project['name']}' still contains 1 endpoint"
    )
    assert page.context.request.get(f"/api/v1/projects/{project['id']}").ok


def test_default_project_keeps_name(open_page, server) -> None:
    admin_name = unique("ui-tadmin")
    with admin_api(server) as admin:
        body = {
            "username": admin_name,
            "password": PASSWORD,
            "tenant": "default",
            "role": "TenantAdmin",
        }
        admin.post("/users", json=body).raise_for_status()
        before = admin.get("/projects/default").json()["description"]
    page = open_page(admin_name, "/ui/projects/default")

    expect(page.get_by_role("button", name="Edit project")).to_be_visible()
    expect(page.get_by_role("button", name="Delete project")).to_have_count(0)
    page.get_by_role("button", name="Edit project").click()
    dialog = page.get_by_role("dialog", name="Edit project default")
    expect(dialog.get_by_role("textbox", name="Project name")).to_have_count(0)
    expect(dialog).to_contain_text("The default project keeps its name")
    try:
        dialog.get_by_label("Description").fill("endpoints of the team")
        dialog.get_by_role("button", name="Save changes").click()
        expect(page.get_by_role("status").first).to_have_text("Project default was updated.")
        expect(page.locator("#main .lead")).to_have_text("endpoints of the team")
    finally:
        with admin_api(server) as admin:
            admin.patch("/projects/default", json={"description": before}).raise_for_status()


def test_member_sees_no_project_actions(open_page) -> None:
    owner = open_page(OWNER)
    project = create_project(owner, unique("ui-owned"))
    owner.goto(f"/ui/projects/{project['id']}")
    expect(owner.get_by_role("button", name="Edit project")).to_be_visible()
    expect(owner.get_by_role("button", name="Delete project")).to_be_visible()

    page = open_page(MEMBER, f"/ui/projects/{project['id']}")
    expect(page.get_by_role("heading", name=project["name"], level=1)).to_be_visible()
    expect(page.get_by_role("button", name="Edit project")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete project")).to_have_count(0)
    expect(page.locator("#project-edit-dialog, #project-delete-dialog")).to_have_count(0)
    expect(page.get_by_role("button", name="New endpoint")).to_be_visible()

    page.goto("/ui/projects")
    expect(page.get_by_role("link", name=project["name"], exact=True)).to_be_visible()
    actions = page.get_by_role("button", name=f"Actions for project {project['name']}")
    expect(actions).to_have_count(0)


def test_project_list_row_actions(open_page, server) -> None:
    page = open_page(OWNER)
    old_name, new_name = unique("ui-row"), unique("ui-row-renamed")
    project = create_project(page, old_name, "first text")
    page.goto("/ui/projects")
    page.wait_for_load_state("load")
    # alice may change only her own projects, and the default one is not hers.
    expect(page.get_by_role("button", name="Actions for project default")).to_have_count(0)

    page.get_by_role("button", name=f"Actions for project {old_name}").click()
    page.get_by_role("button", name="Edit", exact=True).click()
    dialog = page.get_by_role("dialog", name=f"Edit project {old_name}")
    expect(dialog.get_by_label("Project name")).to_have_value(old_name)
    dialog.get_by_label("Project name").fill(new_name)
    with admin_api(server) as admin:
        admin.patch(
            f"/projects/{project['id']}", json={"description": "changed elsewhere"}
        ).raise_for_status()
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog.locator('[data-error-for="form"]')).to_contain_text(
        'Its description is now "changed elsewhere". Save again'
    )
    dialog.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status").first).to_have_text(
        f"Project {old_name} was renamed to {new_name}."
    )
    expect(page.get_by_role("link", name=new_name, exact=True)).to_be_visible()

    page.get_by_role("button", name=f"Actions for project {new_name}").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    alert = page.get_by_role("alertdialog", name=f"Delete project {new_name}?")
    expect(alert).to_contain_text("its name becomes free for a new project")
    alert.get_by_role("button", name="Yes, delete it").click()
    expect(page.get_by_role("status").first).to_have_text(f"Project {new_name} was deleted.")
    expect(page.get_by_role("link", name=new_name, exact=True)).to_have_count(0)
    assert page.context.request.get(f"/api/v1/projects/{project['id']}").status == 404
