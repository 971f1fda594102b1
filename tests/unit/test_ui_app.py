"""The web UI app without a server: sign-in redirects, fragments and unexpected errors."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from berth.settings import Settings
from berth.ui import create_ui


class FakeDatabase:
    """Hands out a session placeholder, or fails as a database that is down."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken

    @contextmanager
    def session(self) -> Iterator[Any]:
        if self.broken:
            raise RuntimeError("database is down")
        yield object()


def client_for(tmp_path: Path, database: FakeDatabase, token: str | None = None) -> TestClient:
    app = create_ui(Settings(home=tmp_path), database)  # type: ignore[arg-type]
    cookies = {"berth_session": token} if token else None
    return TestClient(app, base_url="http://127.0.0.1", follow_redirects=False, cookies=cookies)


def test_page_without_session_redirects(tmp_path: Path) -> None:
    response = client_for(tmp_path, FakeDatabase()).get("/projects?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fprojects%3Fx%3D1"


def test_fragment_without_session_is_401(tmp_path: Path) -> None:
    response = client_for(tmp_path, FakeDatabase()).get("/fragments/live-endpoints")
    assert response.status_code == 401


def test_unexpected_error_shows_error_page(tmp_path: Path) -> None:
    client = client_for(tmp_path, FakeDatabase(broken=True), token="token")
    response = client.get("/")
    assert response.status_code == 500
    assert "the server log has the details" in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_unknown_page_is_404_page(tmp_path: Path) -> None:
    response = client_for(tmp_path, FakeDatabase()).get("/no-such-page")
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in response.text


def test_cross_site_tenant_switch_is_rejected(tmp_path: Path) -> None:
    response = client_for(tmp_path, FakeDatabase(), token="token").post(
        "/tenant",
        content="tenant=research",
        headers={
            "Origin": "http://elsewhere.invalid",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 403
