"""The management API's validation handler on a small app: field names, the 400 for an
empty body or a body that is not UTF-8 JSON, and the 415."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.testclient import TestClient

import berth.api.routes
from berth.api.app import _berth_error, _field_path, _validation_error
from berth.api.strict_json import StrictJSONRoute
from berth.errors import BerthError, NotFound, plain_validation_message, value_text
from berth.json_nesting import MAX_JSON_DEPTH


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


def require_thing(number: int) -> None:
    if number != 1:
        raise NotFound(f"thing {number} not found")


def build_app() -> FastAPI:
    app = FastAPI()
    app.router.route_class = StrictJSONRoute
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(BerthError, _berth_error)

    @app.post("/things")
    def create_thing(body: Body) -> dict[str, str]:
        return {"status": "created"}

    @app.get("/things/{number}")
    def get_thing(number: int, limit: Annotated[int, Query(ge=1)] = 10) -> dict[str, int]:
        return {"number": number, "limit": limit}

    @app.patch("/things/{number}", dependencies=[Depends(require_thing)])
    def update_thing(number: int, body: Body) -> dict[str, int]:
        return {"number": number}

    @app.post("/things/{number}/touch")
    def touch_thing(number: int) -> dict[str, int]:
        return {"number": number}

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(build_app())


def _invalid_json_message(client: TestClient, body: bytes) -> str:
    """POST `body` as JSON, check that it gets 400 invalid_json, and return the message."""
    response = client.post("/things", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["field"] == "body"
    return str(error["message"])


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


def test_messages_read_as_the_api_words_them(client: TestClient) -> None:
    too_small = client.get("/things/1", params={"limit": 0}).json()["error"]["message"]
    unknown = client.post("/things", json={"colour": "red"}).json()["error"]["message"]
    missing = client.post("/things", json={"items": [{}]}).json()["error"]["message"]

    assert too_small == 'limit: must be greater than or equal to 1 (got "0")'
    assert unknown == 'colour: is not a field of this request; leave it out (got "red")'
    assert missing == "items.0.name: is required"


def test_long_string_keeps_its_quotes(client: TestClient) -> None:
    response = client.post("/things", json={"label": "d" * 150})

    message = response.json()["error"]["message"]
    assert message.startswith("label: must be at most 100 characters long")
    assert message.endswith(f'(got "{"d" * 40}…", 150 characters)')


def test_unreadable_date_names_the_form() -> None:
    # pydantic's own message ends with "input is too short" and names no form.
    error = {"type": "datetime_from_date_parsing", "msg": "Input should be a valid datetime"}

    assert plain_validation_message(error) == (
        "must be a date and time in ISO 8601 form, such as 2025-03-01T14:30:00Z"
    )


def test_value_text_escapes_separators_and_bidirectional_controls() -> None:
    # Raw, U+202E would show the rest of the message reversed.
    assert value_text("a\u202eb\u2028c\x85") == '"a\\u202eb\\u2028c\\u0085"'
    assert value_text("\u2066" * 300).startswith('"\\u2066\\u2066')


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
    assert error["message"].startswith("request body is not valid JSON at character ")


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_empty_body_is_400(client: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}

    response = client.post("/things", content=b"", headers=headers)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["field"] == "body"
    assert error["message"] == (
        "request body is empty; POST /things requires a JSON object, "
        "sent with Content-Type: application/json"
    )


@pytest.mark.parametrize("body", [b" ", b"\n", b" \t\r\n "])
@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_whitespace_body_is_empty(
    client: TestClient, body: bytes, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}

    response = client.post("/things", content=body, headers=headers)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["field"] == "body"
    assert error["message"].startswith("request body is empty; POST /things requires")


def test_form_feed_is_not_json_whitespace(client: TestClient) -> None:
    response = client.post("/things", content=b"\x0c", headers={"Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith("request body is not valid JSON")


@pytest.mark.parametrize(
    ("body", "byte", "position"),
    [
        (b'{"label": "\xff"}', "0xff", 11),
        (b'{"label": "caf\xe9"}', "0xe9", 14),
        # A UTF-16 surrogate encoded as UTF-8 bytes (CESU-8), which UTF-8 does not allow.
        (b'{"label": "\xed\xa0\x80"}', "0xed", 11),
        # UTF-16 with a byte order mark, which Python's json module would decode.
        ('{"label": "x"}'.encode("utf-16"), "0xff", 0),
        (b'\xef\xbb\xbf{"label": "\xff"}', "0xff", 14),
    ],
)
def test_body_not_utf8_is_400(client: TestClient, body: bytes, byte: str, position: int) -> None:
    message = _invalid_json_message(client, body)

    assert message == (
        f"request body is not valid UTF-8: byte {byte} at position {position}; "
        "send JSON encoded as UTF-8"
    )


@pytest.mark.parametrize(
    ("body", "escape", "position"),
    [
        (b'{"label": "x\\ud800"}', "\\ud800", 12),
        (b'{"label": "\\udc00x"}', "\\udc00", 11),
        # A high surrogate followed by an escape that is not a low one.
        (b'{"label": "\\ud83d\\n"}', "\\ud83d", 11),
        (b'{"label": "\\ud83d\\ud83d"}', "\\ud83d", 11),
        # The halves of a pair in the wrong order.
        (b'{"label": "\\ude00\\ud83d"}', "\\ude00", 11),
        (b'{"\\ud800": 1}', "\\ud800", 2),
    ],
)
def test_lone_surrogate_is_400(client: TestClient, body: bytes, escape: str, position: int) -> None:
    message = _invalid_json_message(client, body)

    assert message == (
        f"request body is not valid JSON at character {position}: {escape} is half of a "
        "UTF-16 surrogate pair without the other half; escape a character above U+FFFF as a "
        "pair, or send it as UTF-8"
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"label": "\\ud83d\\ude00"}',
        b'{"label": "\\uD83D\\uDE00 and \\u00e9"}',
        # An escaped backslash followed by the text "ud800", which is no escape.
        b'{"label": "\\\\ud800"}',
    ],
)
def test_surrogate_pair_is_accepted(client: TestClient, body: bytes) -> None:
    response = client.post("/things", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 200, response.text


def test_utf8_body_with_byte_order_mark_is_accepted(client: TestClient) -> None:
    body = '\ufeff{"label": "café"}'.encode()

    response = client.post("/things", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 200, response.text


def test_body_not_utf8_is_415_without_json_type(client: TestClient) -> None:
    response = client.post("/things", content=b"\xff", headers={"Content-Type": "text/plain"})

    assert response.status_code == 415, response.text


def test_body_ignored_by_route_is_not_decoded(client: TestClient) -> None:
    response = client.post(
        "/things/1/touch", content=b"\xff", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "received"),
    [
        (b"null", "JSON null"),
        (b"[]", "a JSON array"),
        (b'[{"label": "x"}]', "a JSON array"),
        (b'"text"', "a JSON string"),
        (b"3", "a JSON number"),
        (b"2.5", "a JSON number"),
        (b"true", "a JSON boolean"),
        (b" false ", "a JSON boolean"),
    ],
)
def test_body_not_object_is_400(client: TestClient, body: bytes, received: str) -> None:
    message = _invalid_json_message(client, body)

    assert message == (f"request body is {received}, but POST /things requires a JSON object")


@pytest.mark.parametrize("body", [b"", b" \n", b"null", b"[1]", b'{"count": "two"}'])
def test_unknown_resource_is_404_before_body(client: TestClient, body: bytes) -> None:
    response = client.patch("/things/2", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "constant", "position"),
    [
        (b'{"count": NaN}', "NaN", 10),
        (b'{"count": Infinity}', "Infinity", 10),
        (b'{"count": -Infinity}', "-Infinity", 10),
        (b'{"items": [{"name": "x"}], "path": NaN}', "NaN", 35),
        # The NaN and Infinity before the escaped quote are inside a string, so the decoder
        # rejects the Infinity outside it.
        (b'{"label": "NaN \\" Infinity", "body": Infinity}', "Infinity", 37),
    ],
)
def test_non_finite_number_is_400(
    client: TestClient, body: bytes, constant: str, position: int
) -> None:
    message = _invalid_json_message(client, body)

    assert message == (
        f"request body is not valid JSON at character {position}: "
        f"{constant} is not a JSON number; send a number or null"
    )


def test_non_finite_words_in_strings_are_accepted(client: TestClient) -> None:
    response = client.post("/things", json={"label": "NaN Infinity -Infinity"})

    assert response.status_code == 200, response.text


DEEP = 100_000


@pytest.mark.parametrize(
    ("body", "position"),
    [
        (b"[" * DEEP, MAX_JSON_DEPTH),
        (b'{"a": ' * DEEP, 6 * MAX_JSON_DEPTH),
        # The first level is the object, so the array opens the second.
        (b'{"items": ' + b"[" * DEEP + b"]" * DEEP + b"}", 10 + MAX_JSON_DEPTH - 1),
        # Brackets inside strings do not count.
        (b'{"label": "' + b"[" * DEEP + b'", "items": ' + b"[" * DEEP, 11 + DEEP + 12 + 511),
    ],
)
def test_deeply_nested_json_is_400(client: TestClient, body: bytes, position: int) -> None:
    message = _invalid_json_message(client, body)

    assert message == (
        f"request body is not valid JSON at character {position}: depth limit exceeded, "
        f"arrays and objects are nested more than {MAX_JSON_DEPTH} levels deep; send JSON "
        f"with at most {MAX_JSON_DEPTH} levels of nesting"
    )


def test_nesting_at_depth_limit_is_decoded(client: TestClient) -> None:
    depth = MAX_JSON_DEPTH - 1
    body = b'{"label": ' + b"[" * depth + b"]" * depth + b"}"

    response = client.post("/things", content=body, headers={"Content-Type": "application/json"})

    # A 422 for the label shows that the body was decoded.
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "label"


def test_multibyte_text_before_deep_nesting_counts_characters(client: TestClient) -> None:
    prefix = '{"label": "ééé", "items": '.encode()
    body = prefix + b"[" * DEEP

    message = _invalid_json_message(client, body)

    # The prefix is 26 characters long in 29 bytes, and the object is the first level.
    assert message.startswith(
        f"request body is not valid JSON at character {26 + MAX_JSON_DEPTH - 1}: "
    )


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"count": 1, "count": 2}', "count"),
        # The duplicate is found in objects at any depth, including inside arrays.
        (b'{"items": [{"name": "a"}, {"name": "b", "name": "c"}]}', "name"),
        (b'{"items": [], "path": {"x": {"y": 1, "y": 1}}}', "y"),
        # An escape that decodes to the same key is the same key.
        (b'{"label": "a", "\\u006cabel": "b"}', "label"),
    ],
)
def test_duplicate_key_is_400(client: TestClient, body: bytes, key: str) -> None:
    message = _invalid_json_message(client, body)

    assert message == (
        f'request body has the key "{key}" more than once in one JSON object; send each key once'
    )


def test_same_key_in_other_objects_is_accepted(client: TestClient) -> None:
    body = b'{"items": [{"name": "a"}, {"name": "b"}], "label": "name"}'

    response = client.post("/things", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 200, response.text


def test_duplicate_lone_surrogate_key_names_surrogate(client: TestClient) -> None:
    body = b'{"\\ud800": 1, "\\ud800": 2}'

    message = _invalid_json_message(client, body)

    assert message.startswith("request body is not valid JSON at character 2: \\ud800 is half")


def test_every_api_route_decodes_strictly() -> None:
    modules = [
        importlib.import_module(f"berth.api.routes.{module.name}")
        for module in pkgutil.iter_modules(berth.api.routes.__path__)
    ]
    routes = [route for module in modules for route in module.router.routes]

    assert len(routes) > 20
    for route in routes:
        assert isinstance(route, StrictJSONRoute), route.path


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
