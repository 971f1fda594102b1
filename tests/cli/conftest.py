"""A Berth server for the CLI tests, and a runner that calls the `berth` app in-process."""

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from berth.cli.main import app
from berth.client import ApiError, Client
from tests.support import ADMIN_KEY, BerthServer

# The echo model starts in about a second; this leaves room for a loaded machine.
WAIT_TIMEOUT_S = "60"

RunCli = Callable[..., Result]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    home = tmp_path_factory.mktemp("cli") / "home"
    berth = BerthServer(home, BERTH_CAPACITY="8").start()
    yield berth
    berth.stop()


@pytest.fixture(scope="session")
def client(server: BerthServer) -> Iterator[Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    """An empty XDG_CONFIG_HOME, so that no test reads or writes the user's profile."""
    path = tmp_path / "config"
    path.mkdir()
    return path


@pytest.fixture
def clean_endpoints(client: Client) -> Iterator[None]:
    """Delete every endpoint after the test, so that the server's instance slots stay free."""
    yield
    for endpoint in client.list_endpoints(limit=500)["items"]:
        try:
            client.delete_endpoint(endpoint["id"])
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise


@pytest.fixture
def cli(server: BerthServer, config_home: Path, clean_endpoints: None) -> RunCli:
    """Return a function that runs `berth ARGS...` against the test server.

    Keyword arguments override environment variables; None removes one.
    `input` is passed to the command's stdin.
    """
    runner = CliRunner()

    def run(*args: str, input: str | None = None, **env: str | None) -> Result:
        environment: dict[str, str | None] = {
            "BERTH_SERVER": server.url,
            "BERTH_API_KEY": ADMIN_KEY,
            "BERTH_TENANT": None,
            "XDG_CONFIG_HOME": str(config_home),
            "COLUMNS": "80",
            "NO_COLOR": "1",
            **env,
        }
        return runner.invoke(app, list(args), input=input, env=environment)

    return run


def parse_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def create_endpoint(cli: RunCli, name: str, *extra: str) -> dict[str, Any]:
    """Create an echo endpoint through the CLI, wait until it is Live, and return its JSON."""
    result = cli(
        "endpoint",
        "create",
        "--endpoint-name",
        name,
        "--model",
        "echo",
        "--wait",
        "--timeout",
        WAIT_TIMEOUT_S,
        "-o",
        "json",
        *extra,
    )
    return parse_json(result)  # type: ignore[no-any-return]


def unboxed(text: str) -> str:
    """Return Typer's boxed usage error as one line, with box characters and wrapping removed."""
    without_box = "".join(" " if character in "│╭╮╰╯─" else character for character in text)
    return " ".join(without_box.split())


def unique(name: str) -> str:
    """Return `name` with a random suffix, since every test shares one server."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


def new_user(client: Client, name: str, tenant: str | None = None, role: str = "User") -> str:
    """Create a user with a platform API key through the SDK and return the key."""
    created = client.create_user(name, tenant=tenant, role=role, create_key=True)
    return str(created["api_key"])
