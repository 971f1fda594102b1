"""BERTH_PUBLIC_URL: a real server behind a small reverse proxy on 127.0.0.1 that serves
Berth under a path prefix, as a proxy in front of Berth would."""

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from berth.cli.main import app
from berth.client import Client
from tests.e2e.conftest import wait_live
from tests.support import ADMIN_KEY, BerthServer, free_port

PROXY_PREFIX = "/berth"
# Headers that the proxy sets itself, or that httpx has already applied to the body.
_HOP_HEADERS = frozenset(
    {"host", "connection", "content-length", "transfer-encoding", "content-encoding"}
)


class ReverseProxy(ThreadingHTTPServer):
    """Forward requests under PROXY_PREFIX to a Berth server, without the prefix."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _ForwardHandler)
        self.target = ""
        self.forwarded: list[str] = []


class _ForwardHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ReverseProxy

    def _forward(self) -> None:
        if not self.path.startswith(PROXY_PREFIX + "/"):
            self.send_error(404)
            return
        path = self.path[len(PROXY_PREFIX) :]
        self.server.forwarded.append(path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {
            name: value for name, value in self.headers.items() if name.lower() not in _HOP_HEADERS
        }
        response = httpx.request(
            self.command, self.server.target + path, content=body, headers=headers, timeout=60
        )

        self.send_response(response.status_code)
        for name, value in response.headers.items():
            if name.lower() not in _HOP_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.content)))
        self.end_headers()
        self.wfile.write(response.content)

    do_GET = _forward
    do_POST = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Setup:
    server: BerthServer
    proxy: ReverseProxy
    public_url: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    proxy = ReverseProxy(free_port())
    thread = threading.Thread(target=proxy.serve_forever, name="test-proxy", daemon=True)
    thread.start()
    public_url = f"http://127.0.0.1:{proxy.server_address[1]}{PROXY_PREFIX}"
    home = tmp_path_factory.mktemp("public-url") / "home"
    # The trailing slash is tolerated.
    server = BerthServer(home, BERTH_PUBLIC_URL=f"{public_url}/").start()
    proxy.target = server.url
    yield Setup(server, proxy, public_url)
    server.stop()
    proxy.shutdown()
    proxy.server_close()


@pytest.fixture(scope="module")
def client(setup: Setup) -> Iterator[Client]:
    with setup.server.client() as client:
        yield client


@pytest.fixture(scope="module")
def endpoint(client: Client) -> dict[str, Any]:
    created = client.create_endpoint("default", "behind-proxy", "echo")
    return {**wait_live(client, created["id"]), "first_key": created["first_key"]}


def test_api_urls_start_with_public_url(
    setup: Setup, client: Client, endpoint: dict[str, Any]
) -> None:
    expected = f"{setup.public_url}/endpoints/{endpoint['id']}"
    listed = client.list_endpoints()["items"]

    assert endpoint["url"] == expected
    assert endpoint["openai_base_url"] == f"{expected}/v1"
    assert [item["url"] for item in listed] == [expected]
    assert setup.server.url not in str(listed)


def test_public_url_reaches_endpoint(setup: Setup, endpoint: dict[str, Any]) -> None:
    response = httpx.post(
        f"{endpoint['openai_base_url']}/chat/completions",
        json={"messages": [{"role": "user", "content": "through the proxy"}]},
        headers={"Authorization": f"Bearer {endpoint['first_key']}"},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert "through the proxy" in response.json()["choices"][0]["message"]["content"]
    assert f"/endpoints/{endpoint['id']}/v1/chat/completions" in setup.proxy.forwarded


def test_cli_prints_public_url(setup: Setup, endpoint: dict[str, Any], tmp_path: Path) -> None:
    environment = {
        "BERTH_SERVER": setup.server.url,
        "BERTH_API_KEY": ADMIN_KEY,
        "XDG_CONFIG_HOME": str(tmp_path),
        "COLUMNS": "200",
    }
    runner = CliRunner()

    info = runner.invoke(app, ["endpoint", "info", "behind-proxy"], env=environment)
    created = runner.invoke(
        app,
        ["endpoint", "create", "--endpoint-name", "printed-example", "--model", "echo"],
        env=environment,
    )

    assert info.exit_code == 0, info.output
    assert f"URL              {endpoint['url']}\n" in info.stdout
    assert f"OpenAI base URL  {endpoint['openai_base_url']}\n" in info.stdout
    assert created.exit_code == 0, created.output
    assert f"  curl {setup.public_url}/endpoints/" in created.stdout
    assert setup.server.url not in created.stdout


def test_web_ui_shows_public_url(setup: Setup, client: Client, endpoint: dict[str, Any]) -> None:
    client.update_user("me", password="public-url-password-123")
    with httpx.Client(base_url=setup.server.url) as browser:
        signed_in = browser.post(
            "/api/v1/auth/login",
            json={"username": "admin", "password": "public-url-password-123"},
        )
        page = browser.get(f"/ui/endpoints/{endpoint['id']}")
        dashboard = browser.get("/ui/")

    assert signed_in.status_code == 200, signed_in.text
    assert page.status_code == 200
    assert f'<code class="url" id="endpoint-url">{endpoint["url"]}</code>' in page.text
    # The playground sends its requests, and builds its curl example, from this base URL.
    assert f'data-base-url="{endpoint["openai_base_url"]}"' in page.text
    assert endpoint["url"] in dashboard.text
    assert setup.server.url not in page.text
