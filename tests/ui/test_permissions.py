"""A tenant member who does not own an endpoint can view it, its keys and the
playground, but is offered none of the owner's actions."""

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import MEMBER, OWNER, create_endpoint

pytestmark = pytest.mark.ui


def test_member_sees_no_owner_actions(open_page) -> None:
    owner = open_page(OWNER)
    endpoint = create_endpoint(owner, "ui-owned")
    owner.goto(f"/ui/endpoints/{endpoint['id']}")
    expect(owner.get_by_role("button", name="Edit")).to_be_visible()

    page = open_page(MEMBER, f"/ui/endpoints/{endpoint['id']}")
    expect(page.get_by_role("heading", name="ui-owned", level=1)).to_be_visible()
    expect(page.locator("#endpoint-status")).to_have_text("Live", timeout=30_000)
    for name in ("Edit", "Stop", "Restart", "Delete", "Add new"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Actions for the key", exact=False)).to_have_count(0)
    expect(page.locator("dialog")).to_have_count(0)
    # Viewing keys and using them is open to every member of the tenant.
    expect(page.get_by_role("button", name="Copy the key FirstKey")).to_be_visible()
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()

    page.goto(f"/ui/projects/{endpoint['project']['id']}")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="ui-owned"))
    expect(row).to_contain_text("No actions")
    expect(row.get_by_role("button")).to_have_count(0)
    # Any member of the tenant may add endpoints of their own.
    expect(page.get_by_role("button", name="New endpoint")).to_be_visible()
