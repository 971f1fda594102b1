"""The management API's validation handler on a small app: field names, the 400 for a
body that is not JSON, and the 415."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.testclient import TestClient

from berth.api.app import _field_path, _validation_error
from berth.errors import value_text


class Item(BaseModel):
    name: str


class Body(BaseModel):
    # Field names that are also FastAPI's location prefixes.
    model_config = ConfigDict(extra="forbid")
    path: int = 0
    query: int = 0
    header: int = 0
    body: int = 0
    items: list[Item] = []
    count: StrictInt = 0
    label: str = Field(default="", max_length=100)


def build_app() -> FastAPI:
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.post("/things")
    def create_thing(body: Body) -> dict[str, str]:
        return {"status": "created"}

    @app.get("/things/{number}")
    def get_thing(number: int, limit: Annotated[int, Query(ge=1)] = 10) -> dict[str, int]:
        return {"number": number, "limit": limit}

    @app.post("/things/{number}/touch")
    def touch_thing(number: int) -> dict[str, int]:
        return {"number": number}

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(build_app())


@pytest.mark.parametrize(
    ("location", "field"),
    [
        (("body", "path"), "path"),
        (("body", "query"), "query"),
        (("body", "header"), "header"),
        (("body", "body"), "body"),
        (("body", "items", 0, "name"), "items.0.name"),
        (("body",), "body"),
        (("query", "limit"), "limit"),
        (("path", "number"), "number"),
        (("header", "x-berth-tenant"), "x-berth-tenant"),
        (("query", "path"), "path"),
    ],
)
def test_field_path(location: tuple[object, ...], field: str) -> None:
    assert _field_path(location) == field


@pytest.mark.parametrize("name", ["path", "query", "header", "body"])
def test_body_field_named_like_a_location(client: TestClient, name: str) -> None:
    response = client.post("/things", json={name: "not a number"})

    assert response.status_code == 422
    assert response.json()["error"]["field"] == name
    assert response.json()["error"]["message"].startswith(f"{name}: ")


def test_query_and_path_parameters_are_named(client: TestClient) -> None:
    bad_query = client.get("/things/1", params={"limit": 0})
    bad_path = client.get("/things/one")

    assert bad_query.json()["error"]["field"] == "limit"
    assert bad_path.json()["error"]["field"] == "number"


@pytest.mark.parametrize(
    ("value", "shown"),
    [(True, "true"), (None, "null"), ("two", '"two"'), (2.5, "2.5"), ([1, 2], "[1, 2]")],
)
def test_rejected_value_shown_as_json(client: TestClient, value: object, shown: str) -> None:
    response = client.post("/things", json={"count": value})

    assert response.status_code == 422
    assert response.json()["error"]["message"].endswith(f"(got {shown})")


def test_long_string_keeps_its_quotes(client: TestClient) -> None:
    response = client.post("/things", json={"label": "d" * 150})

    message = response.json()["error"]["message"]
    assert message.startswith("label: String should have at most 100 characters")
    assert message.endswith(f'(got "{"d" * 40}…", 150 characters)')


def test_value_text_cuts_long_values() -> None:
    assert value_text("short") == '"short"'
    assert value_text(list(range(100))) == "[" + ", ".join(map(str, range(100)))[:58] + "…"
    assert value_text(False) == "false"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x"]
)
def test_body_not_sent_as_json_is_415(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/things", content=b'{"path": 1}', headers={"Content-Type": content_type}
    )

    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["field"] == "Content-Type"
    assert f"'{content_type}'" in error["message"]
    assert "application/json" in error["message"]


def test_body_without_content_type_is_415(client: TestClient) -> None:
    response = client.post("/things", content=b'{"path": 1}')

    assert response.status_code == 415
    assert "no Content-Type header" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/x+json"]
)
def test_json_content_types_are_accepted(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/things", content=b'{"path": 1}', headers={"Content-Type": content_type}
    )

    assert response.status_code == 200, response.text


def test_json_that_fails_validation_stays_422(client: TestClient) -> None:
    response = client.post("/things", json={"unknown": 1})

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "unknown"


@pytest.mark.parametrize("body", [b'{"name": ', b"{'name': 1}", b"not json", b'{"a": 1}}'])
def test_malformed_json_is_400(client: TestClient, body: bytes) -> None:
    response = client.post("/things", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["field"] == "body"
    assert error["message"].startswith("request body is not valid JSON: ")


def test_missing_body_stays_422(client: TestClient) -> None:
    response = client.post("/things")

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "body"


def test_every_invalid_field_is_listed(client: TestClient) -> None:
    response = client.post("/things", json={"path": "x", "items": [{"name": 5}]})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "path"
    assert [item["field"] for item in error["errors"]] == ["path", "items.0.name"]
    assert error["errors"][0]["message"].startswith("path: ")
    assert error["errors"][1]["message"].startswith("items.0.name: ")
    assert error["message"] == "; ".join(item["message"] for item in error["errors"])


def test_route_without_body_ignores_content_type(client: TestClient) -> None:
    bare = client.post("/things/3/touch")
    with_text = client.post(
        "/things/3/touch", content=b"ignored", headers={"Content-Type": "text/plain"}
    )

    assert bare.status_code == 200
    assert with_text.status_code == 200
