"""Signing in and out, and switching the active tenant."""

import re

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import (
    MEMBER,
    PASSWORD,
    SECOND_TENANT,
    TRAVELLER,
    admin_api,
    check_screen,
)

pytestmark = pytest.mark.ui


def test_sign_in_and_out(open_page) -> None:
    page = open_page(None, "/ui/projects")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    check_screen(page, "sign-in")

    page.get_by_label("User name").fill(MEMBER)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/ui/projects$"))
    expect(page.get_by_role("heading", name="Projects", level=1)).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/login$"))
    page.goto("/ui/")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))


def test_sign_in_requires_user_name(open_page) -> None:
    page = open_page(None, "/ui/login")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-username-error")).to_have_text("Enter your user name.")
    expect(page.get_by_label("User name")).to_have_attribute("aria-invalid", "true")


def test_sign_in_shows_both_missing_fields(open_page) -> None:
    page = open_page(None, "/ui/login")
    page.get_by_role("button", name="Sign in").click()

    expect(page.locator("#sign-in-username-error")).to_have_text("Enter your user name.")
    expect(page.locator("#sign-in-password-error")).to_have_text("Enter your password.")
    expect(page.get_by_label("User name")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("User name")).to_be_focused()


def test_tenant_switcher_changes_active_tenant(open_page) -> None:
    page = open_page(TRAVELLER, "/ui/projects")
    switcher = page.get_by_label("Tenant")
    expect(switcher.locator("option:checked")).to_have_text("default")

    switcher.select_option(label=SECOND_TENANT)
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_label("Tenant").locator("option:checked")).to_have_text(SECOND_TENANT)

    # The API, called with the same session cookie, now acts in the new tenant too.
    whoami = page.context.request.get("/api/v1/projects").json()
    assert [item["tenant"]["name"] for item in whoami["items"]] == [SECOND_TENANT]


def test_single_tenant_user_sees_no_switcher(open_page) -> None:
    page = open_page(MEMBER)
    expect(page.get_by_text("Tenant default")).to_be_visible()
    expect(page.get_by_role("button", name="Switch")).to_have_count(0)


def test_disabled_user_sign_in_says_so(open_page, server) -> None:
    with admin_api(server) as admin:
        body = {"username": "dana", "password": PASSWORD, "tenant": "default", "role": "User"}
        admin.post("/users", json=body).raise_for_status()
        admin.patch("/users/dana", json={"disabled": True}).raise_for_status()
    page = open_page(None, "/ui/login")

    page.get_by_label("User name").fill("dana")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("User 'dana' is disabled")
    expect(page.get_by_role("alert")).to_contain_text("berth user enable dana")
    expect(page).to_have_url(re.compile(r"/ui/login$"))


def test_sign_in_with_only_disabled_tenants(open_page, server) -> None:
    with admin_api(server) as admin:
        admin.post("/tenants", json={"name": "dormant"}).raise_for_status()
        body = {"username": "dirk", "password": PASSWORD, "tenant": "dormant", "role": "User"}
        admin.post("/users", json=body).raise_for_status()
        admin.patch("/tenants/dormant", json={"disabled": True}).raise_for_status()
    page = open_page(None, "/ui/login")

    page.get_by_label("User name").fill("dirk")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="Your tenant is disabled", level=1)).to_be_visible()
    expect(page.get_by_text("belongs only to disabled tenants: dormant")).to_be_visible()
