"""The playground: a streamed chat reply and embeddings through the gateway, and code
snippets that work as shown."""

import shutil
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import OWNER, create_endpoint

pytestmark = pytest.mark.ui


def _open_live_endpoint(page, name: str) -> None:
    """Create an Echo endpoint, open its page and wait until it shows Live."""
    endpoint = create_endpoint(page, name)
    page.goto(f"/ui/endpoints/{endpoint['id']}")
    expect(page.locator("#endpoint-status")).to_have_text("Live", timeout=30_000)


def test_chat_and_embeddings(open_page) -> None:
    page = open_page(OWNER)
    _open_live_endpoint(page, "ui-playground")

    playground = page.get_by_role("region", name="Playground")
    playground.get_by_label("Message").fill("hello there brave new world")
    playground.get_by_role("button", name="Send").click()
    reply = playground.locator(".message-assistant .message-text")
    expect(reply).to_have_attribute("data-done", "true")
    expect(reply).to_have_text("hello there brave new world")
    # Echo streams one word per event, and the page showed each as it came.
    expect(reply).to_have_attribute("data-chunks", "5")

    playground.get_by_text("Embeddings", exact=True).click()
    playground.get_by_label("Texts to embed, one per line").fill("a cat\na dog")
    playground.get_by_role("button", name="Embed").click()
    expect(playground.locator("caption")).to_have_text("2 vectors of 8 dimensions")


def test_chat_error_is_shown_in_plain_words(open_page) -> None:
    page = open_page(OWNER)
    endpoint = create_endpoint(page, "ui-stopped")
    response = page.context.request.post(f"/api/v1/endpoints/{endpoint['id']}/stop")
    assert response.ok
    page.goto(f"/ui/endpoints/{endpoint['id']}")
    expect(page.locator("#endpoint-status")).to_have_text("Stopped", timeout=30_000)

    page.get_by_label("Message").fill("anyone there?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#chat-error")).to_contain_text("(status 503)")
    expect(page.locator(".message")).to_have_count(0)


def test_snippets_run_as_shown(open_page, tmp_path) -> None:
    page = open_page(OWNER)
    endpoint = create_endpoint(page, "ui-snippets")
    added = page.context.request.post(
        f"/api/v1/endpoints/{endpoint['id']}/keys", data={"description": "scripts"}
    ).json()
    page.goto(f"/ui/endpoints/{endpoint['id']}")
    expect(page.locator("#endpoint-status")).to_have_text("Live", timeout=30_000)

    masked = f"{added['key'][:12]}…{added['key'][-4:]}"
    page.get_by_label("API key", exact=True).select_option(label=f"scripts ({masked})")
    python = page.locator("#snippet-python").inner_text()
    curl = page.locator("#snippet-curl").inner_text()
    assert added["key"] in python
    assert endpoint["openai_base_url"] in python
    page.get_by_role("button", name="Copy the Python code").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == python

    script = tmp_path / "snippet.py"
    script.write_text(python)
    ran = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "Hello!"

    page.get_by_text("Embeddings", exact=True).click()
    script.write_text(page.locator("#snippet-python").inner_text())
    ran = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("8 [")

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed, so the curl snippet was not run")
    ran = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert '"content":"Hello!"' in ran.stdout.replace(" ", "")


def test_snippets_show_last_request(open_page, tmp_path) -> None:
    page = open_page(OWNER)
    _open_live_endpoint(page, "ui-snippets-sent")
    playground = page.get_by_role("region", name="Playground")

    # A quote in the message must survive the shell quoting of the curl snippet.
    playground.get_by_label("Message").fill("it's sunny")
    playground.get_by_role("button", name="Send").click()
    expect(playground.locator(".message-assistant .message-text")).to_have_attribute(
        "data-done", "true"
    )
    python = page.locator("#snippet-python").inner_text()
    curl = page.locator("#snippet-curl").inner_text()
    script = tmp_path / "snippet.py"
    script.write_text(python)
    ran_python = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )

    assert '"content":"it\'s sunny"' in python
    assert "Hello!" not in python
    assert ran_python.returncode == 0, ran_python.stderr
    assert ran_python.stdout.strip() == "it's sunny"
    if shutil.which("curl") is not None:
        ran_curl = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
        assert ran_curl.returncode == 0, ran_curl.stderr
        assert "sunny" in ran_curl.stdout

    playground.get_by_text("Embeddings", exact=True).click()
    playground.get_by_label("Texts to embed, one per line").fill("first text\nsecond")
    playground.get_by_role("button", name="Embed").click()
    expect(playground.locator("caption")).to_have_text("2 vectors of 8 dimensions")

    assert 'input=["first text","second"]' in page.locator("#snippet-python").inner_text()
