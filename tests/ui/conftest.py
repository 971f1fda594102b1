"""Fixtures of the web UI tests: a Berth server with users, and Chromium driven by
Playwright's sync API.

The tests skip when Playwright or /usr/bin/chromium is missing, unless
BERTH_TEST_REQUIRE_BROWSER=1 (as in CI) turns that into a failure.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ADMIN_KEY, BerthServer

CHROMIUM = Path("/usr/bin/chromium")
# Flags that keep Chromium on loopback: no update, sync or component downloads, no QUIC,
# and every host name except 127.0.0.1 unresolvable.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
PASSWORD = "harbour-lights-42"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
AXE_SCRIPT = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
# axe-core impacts that fail a test; "moderate" and "minor" findings are only reported.
BLOCKING_IMPACTS = ("serious", "critical")

# Users created for the tests, all with PASSWORD: alice owns the endpoints, bob is a
# plain member of the same tenant, carol belongs to two tenants.
OWNER = "alice"
MEMBER = "bob"
TRAVELLER = "carol"
SECOND_TENANT = "research"


def _browser_missing_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing; install the test extras: pip install '.[test]'"
    if not CHROMIUM.exists():
        return f"Chromium is missing at {CHROMIUM}; install it with: apt-get install -y chromium"
    return None


# Package scope: Playwright's sync API marks an event loop as running in the main thread
# until it stops, which breaks every async test that pytest runs after the UI tests.
@pytest.fixture(scope="package")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from launch_chromium(tmp_path_factory)


def launch_chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start Debian's Chromium with CHROMIUM_ARGS and yield it, or skip the test when
    Playwright or Chromium is missing.

    Tests outside tests/ui build their own fixture on this generator.
    """
    reason = _browser_missing_reason()
    if reason is not None:
        if os.environ.get("BERTH_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} (BERTH_TEST_REQUIRE_BROWSER=1 makes this a failure)")
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    # The default of 5 s is short for a 2-core machine that also runs Berth's instances.
    expect.set_options(timeout=10_000)

    # Chromium writes its profile and caches under HOME, XDG_* and the driver's temporary
    # folder; all of them go into this test run's folder.
    root = tmp_path_factory.mktemp("chromium")
    folders = {
        "HOME": root / "home",
        "XDG_CONFIG_HOME": root / "config",
        "XDG_CACHE_HOME": root / "cache",
        "TMPDIR": root / "tmp",
    }
    for folder in folders.values():
        folder.mkdir()
    environment = {name: str(folder) for name, folder in folders.items()}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", environment["TMPDIR"])
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                env={**os.environ, **environment},
            )
            yield browser
            browser.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    home = tmp_path_factory.mktemp("ui") / "home"
    berth = BerthServer(home, BERTH_CAPACITY="16").start()
    _create_users(berth.url)
    yield berth
    berth.stop()


def _create_users(url: str) -> None:
    with httpx.Client(
        base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
    ) as admin:
        for name in (OWNER, MEMBER, TRAVELLER):
            body = {"username": name, "password": PASSWORD, "tenant": "default", "role": "User"}
            admin.post("/users", json=body).raise_for_status()
        admin.post("/tenants", json={"name": SECOND_TENANT}).raise_for_status()
        admin.put(f"/tenants/{SECOND_TENANT}/members/{TRAVELLER}", json={"role": "User"})


def admin_api(server: BerthServer) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/api/v1",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )


class PageProblems:
    """Uncaught script errors and Content-Security-Policy refusals seen on a page."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def watch(self, page: Any) -> None:
        page.on("pageerror", lambda error: self.messages.append(f"script error: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.messages.append(f"CSP: {message.text}")


@pytest.fixture
def open_page(browser: Any, server: BerthServer) -> Iterator[Callable[..., Any]]:
    """Open a page in a fresh browser context, signed in as `user` unless it is None."""
    contexts = []
    problems = PageProblems()

    def open_as(user: str | None, path: str = "/ui/") -> Any:
        context = browser.new_context(
            base_url=server.url,
            viewport=DESKTOP,
            permissions=["clipboard-read", "clipboard-write"],
        )
        contexts.append(context)
        context.set_default_timeout(10_000)
        if user is not None:
            response = context.request.post(
                "/api/v1/auth/login", data={"username": user, "password": PASSWORD}
            )
            assert response.ok, response.text()
        page = context.new_page()
        problems.watch(page)
        page.goto(path)
        return page

    yield open_as
    for context in contexts:
        context.close()
    assert not problems.messages, "\n".join(problems.messages)


def create_endpoint(page: Any, name: str, model: str = "echo", instances: int = 1) -> dict:
    """Create an endpoint through the REST API with the page's session cookie."""
    response = page.context.request.post(
        "/api/v1/endpoints",
        data={"project": "default", "name": name, "model": model, "instances": instances},
    )
    assert response.status == 201, response.text()
    return response.json()


def run_axe(page: Any) -> list[dict[str, Any]]:
    """Run axe-core on the page and return its violations of WCAG 2.1 A/AA and best practice."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SCRIPT.read_text())
    return page.evaluate(
        """async () => {
            const results = await axe.run(document, {
                runOnly: {
                    type: "tag",
                    values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
                },
                resultTypes: ["violations"],
            });
            return results.violations.map((violation) => ({
                id: violation.id,
                impact: violation.impact,
                help: violation.help,
                targets: violation.nodes.slice(0, 5).map((node) => node.target.join(" ")),
            }));
        }"""
    )


def check_screen(page: Any, name: str) -> None:
    """Save a screenshot of the page at desktop and phone width, and fail on serious
    axe-core violations or a page wider than a phone's screen."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    # A modal dialog covers the window only, so a screenshot of it shows the window.
    whole_page = page.locator("dialog[open]").count() == 0
    failures = []
    for label, viewport in (("1280", DESKTOP), ("390", PHONE)):
        page.set_viewport_size(viewport)
        page.screenshot(path=SCREENSHOT_DIR / f"{name}-{label}.png", full_page=whole_page)
        blocking = [v for v in run_axe(page) if v["impact"] in BLOCKING_IMPACTS]
        failures += [f"{name} at {label} px: {violation}" for violation in blocking]
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 0:
            failures.append(
                f"{name} at {label} px: the page is {overflow} px wider than its window"
            )
    page.set_viewport_size(DESKTOP)
    assert not failures, "\n".join(failures)
