"""The API keys table of the endpoint window: add, edit and revoke keys."""

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.ui.conftest import OWNER, create_endpoint

pytestmark = pytest.mark.ui


def open_menu(row, name: str):
    """Open the actions menu of a table row and return the menu."""
    row.get_by_role("button", name=name).click()
    return row.page.locator(".menu-items:popover-open")


def key_row(page, description: str):
    return page.locator(".keys-table tbody tr").filter(
        has=page.get_by_role("cell", name=description, exact=True)
    )


def test_add_edit_and_revoke_key(open_page) -> None:
    page = open_page(OWNER)
    endpoint = create_endpoint(page, "ui-keys")
    page.goto(f"/ui/endpoints/{endpoint['id']}")

    first = key_row(page, "FirstKey")
    expect(first).to_contain_text("First key")
    expect(first.get_by_role("button", name="Actions for the key FirstKey")).to_have_count(0)
    first.get_by_role("button", name="Copy the key FirstKey").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == endpoint["first_key"]

    page.get_by_role("button", name="Add new").click()
    dialog = page.get_by_role("dialog", name="Add a new API key")
    dialog.get_by_role("button", name="Add", exact=True).click()
    expect(dialog.locator("#key-add-description-error")).to_contain_text("Enter a description")
    dialog.get_by_label("Description").fill("mobile app")
    dialog.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_role("status").first).to_have_text('Key "mobile app" was added.')
    added = key_row(page, "mobile app")
    expect(added).to_contain_text("Active")
    expect(added).to_contain_text(OWNER)

    open_menu(added, "Actions for the key mobile app").get_by_role("button", name="Edit").click()
    dialog = page.get_by_role("dialog", name="Edit the key description")
    expect(dialog.get_by_label("Key description")).to_have_value("mobile app")
    dialog.get_by_label("Key description").fill("iOS app")
    dialog.get_by_role("button", name="Save").click()
    edited = key_row(page, "iOS app")
    expect(edited).to_contain_text("Active")
    expect(key_row(page, "mobile app")).to_have_count(0)

    edited.get_by_role("button", name="Copy the key iOS app").click()
    secret = page.evaluate("() => navigator.clipboard.readText()")
    menu = open_menu(edited, "Actions for the key iOS app")
    menu.get_by_role("button", name="Revoke").click()
    confirm = page.get_by_role("alertdialog", name=re.compile(r"^Revoke the key .iOS app.\?$"))
    expect(confirm).to_contain_text("every request made with key")
    expect(confirm).to_contain_text("cannot be made active again")
    confirm.get_by_role("button", name="Revoke").click()

    revoked = key_row(page, "iOS app")
    expect(revoked.locator(".key-status")).to_have_text("Revoked")
    # A revoked key can be neither edited nor revoked again, so it has no actions.
    expect(revoked.get_by_role("button", name="Actions for the key iOS app")).to_have_count(0)

    # The gateway rejects the revoked key from now on.
    answer = httpx.post(
        f"{endpoint['openai_base_url']}/embeddings",
        json={"input": ["x"]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )
    assert answer.status_code == 401
