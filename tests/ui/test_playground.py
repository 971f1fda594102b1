"""The playground: a streamed chat reply and embeddings through the gateway, and code
snippets that work as shown."""

import json
import shutil
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import BLOCKING_IMPACTS, OWNER, create_endpoint, run_axe

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


def _reject_chat(route, code: str, message: str) -> None:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    route.fulfill(status=400, content_type="application/json", body=json.dumps(body))


def test_no_chat_template_switches_to_completion(open_page) -> None:
    page = open_page(OWNER)
    _open_live_endpoint(page, "ui-no-template")
    # Echo has a chat mode, so the browser replaces the answers of a runtime whose model has none.
    message = (
        "Model 'echo' has no chat template, so it cannot serve /v1/chat/completions. "
        "Use /v1/completions with a plain prompt."
    )
    page.route(
        "**/chat/completions", lambda route: _reject_chat(route, "no_chat_template", message)
    )
    playground = page.get_by_role("region", name="Playground")

    playground.get_by_label("System prompt (optional)").fill("Tell a fairy tale.")
    playground.get_by_label("Message").fill("once upon a time")
    playground.get_by_role("button", name="Send").click()

    # A plain prompt has no system role, so the system prompt starts the prompt.
    result = page.locator("#completion-result")
    expect(result).to_have_attribute("data-done", "true")
    expect(page.locator("#completion-prompt")).to_have_value(
        "Tell a fairy tale.\n\nonce upon a time"
    )
    assert result.inner_text() == "Tell a fairy tale.\n\nonce upon a time"
    expect(playground.get_by_role("radio", name="Completion")).to_be_checked()
    notice = page.locator("#playground-notice")
    expect(notice).to_contain_text("has no chat template")
    expect(notice).to_contain_text("The prompt starts with your system prompt")
    expect(page.locator("#chat-form")).to_be_hidden()
    assert "client.completions.create(" in page.locator("#snippet-python").inner_text()
    assert not [v for v in run_axe(page) if v["impact"] in BLOCKING_IMPACTS]

    # The tab remembers the model, so the page opens in completion mode after a reload.
    page.reload()
    expect(playground.get_by_role("radio", name="Completion")).to_be_checked()
    expect(page.locator("#completion-form")).to_be_visible()


def test_generation_settings_are_validated(open_page) -> None:
    page = open_page(OWNER)
    _open_live_endpoint(page, "ui-settings")
    playground = page.get_by_role("region", name="Playground")
    temperature = playground.get_by_label("Temperature")
    max_tokens = playground.get_by_label("Max tokens")

    temperature.fill("2.5")
    max_tokens.fill("0")
    playground.get_by_label("Message").fill("one two three four")
    playground.get_by_role("button", name="Send").click()

    expect(page.locator("#sampling-temperature-error")).to_have_text(
        "Temperature must be a number from 0 to 2, not 2.5."
    )
    expect(page.locator("#sampling-max-tokens-error")).to_have_text(
        "Max tokens must be a whole number from 1 to 4096, not 0."
    )
    expect(temperature).to_have_attribute("aria-invalid", "true")
    expect(temperature).to_be_focused()
    expect(page.locator(".message")).to_have_count(0)
    assert not [v for v in run_axe(page) if v["impact"] in BLOCKING_IMPACTS]

    temperature.fill("0")
    max_tokens.fill("2")
    playground.get_by_label("System prompt (optional)").fill("Answer briefly.")
    playground.get_by_role("button", name="Send").click()

    reply = playground.locator(".message-assistant .message-text")
    expect(reply).to_have_attribute("data-done", "true")
    # Echo cuts its reply to max_tokens words.
    expect(reply).to_have_text("one two")
    expect(temperature).not_to_have_attribute("aria-invalid", "true")
    python = page.locator("#snippet-python").inner_text()
    assert "temperature=0," in python
    assert "max_tokens=2," in python
    assert '{"role":"system","content":"Answer briefly."}' in python


def test_context_overflow_offers_dropping_turns(open_page) -> None:
    page = open_page(OWNER)
    _open_live_endpoint(page, "ui-overflow")
    sent: list[list[dict]] = []

    # A context that fits one user message. Longer conversations get the runtime's 400.
    def answer(route) -> None:
        messages = json.loads(route.request.post_data)["messages"]
        sent.append(messages)
        if len([m for m in messages if m["role"] == "user"]) > 1:
            _reject_chat(route, "context_length_exceeded", "The prompt is too long.")
        else:
            route.continue_()

    page.route("**/chat/completions", answer)
    playground = page.get_by_role("region", name="Playground")
    replies = playground.locator(".message-assistant .message-text")

    playground.get_by_label("Message").fill("first question")
    playground.get_by_role("button", name="Send").click()
    expect(replies.nth(0)).to_have_attribute("data-done", "true")
    playground.get_by_label("Message").fill("second question")
    playground.get_by_role("button", name="Send").click()

    expect(page.locator("#chat-error")).to_contain_text("Drop the oldest turns")
    drop = playground.get_by_role("button", name="Drop the oldest turns and send again")
    expect(drop).to_be_visible()
    drop.click()

    expect(replies).to_have_count(1)
    expect(replies.nth(0)).to_have_text("second question")
    expect(replies.nth(0)).to_have_attribute("data-done", "true")
    expect(drop).to_be_hidden()
    expect(playground.get_by_label("Message")).to_have_value("")
    assert sent[-1] == [{"role": "user", "content": "second question"}]
