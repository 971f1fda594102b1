"""Bad input to the management API: a clear error naming the value, and no change."""

import httpx
import pytest

from berth.client import ApiError, Client
from tests.support import ADMIN_KEY, BerthServer


def endpoint_count(client: Client) -> int:
    return int(client.list_endpoints(limit=1)["total"])


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("has space", "'has space' is invalid"),
        ("-leading-dash", "'-leading-dash' is invalid"),
        ("x" * 64, "use at most 63"),
        ("emoji-😀", "is invalid"),
    ],
)
def test_invalid_endpoint_name(client: Client, name: str, fragment: str) -> None:
    before = endpoint_count(client)

    with pytest.raises(ApiError) as error:
        client.create_endpoint("default", name, "echo")

    assert error.value.status == 422
    assert error.value.field == "name"
    assert fragment in error.value.message
    assert endpoint_count(client) == before


def test_unknown_model(client: Client) -> None:
    before = endpoint_count(client)

    with pytest.raises(ApiError) as error:
        client.create_endpoint("default", "val-model", "no-such-model")

    assert error.value.status == 404
    assert "'no-such-model'" in error.value.message
    assert endpoint_count(client) == before


@pytest.mark.parametrize("instances", [0, -1, 17, 1000])
def test_instances_out_of_range(client: Client, instances: int) -> None:
    before = endpoint_count(client)

    with pytest.raises(ApiError) as error:
        client.create_endpoint("default", "val-instances", "echo", instances=instances)

    assert error.value.status == 422
    assert error.value.field == "instances"
    assert str(instances) in error.value.message
    assert endpoint_count(client) == before


def test_instances_of_wrong_type(server: BerthServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        json={"name": "val-type", "model": "echo", "instances": "two"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "instances"
    # The message shows the value in JSON notation.
    assert '(got "two")' in response.json()["error"]["message"]


@pytest.mark.parametrize("value", ["yes", "no", 0, 1, "true"])
def test_flag_of_wrong_type(server: BerthServer, value: object) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        json={"name": "val-flag", "model": "echo", "share_with_all_tenants": value},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "share_with_all_tenants"
    assert "must be a valid boolean" in response.json()["error"]["message"]


def test_every_invalid_field_is_listed(client: Client, server: BerthServer) -> None:
    before = endpoint_count(client)

    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        json={"name": "has space", "model": "demo-tiny-llama-base", "instances": 0},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "name"
    assert [item["field"] for item in error["errors"]] == ["name", "instances", "model"]
    assert "'has space' is invalid" in error["errors"][0]["message"]
    assert "instances 0 is out of range" in error["errors"][1]["message"]
    assert "base model" in error["errors"][2]["message"]
    assert endpoint_count(client) == before


def test_every_field_of_wrong_type_is_listed(server: BerthServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        json={"name": 5, "model": "echo", "instances": "two"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert [item["field"] for item in error["errors"]] == ["name", "instances"]


def test_base_model_cannot_be_deployed(client: Client) -> None:
    with pytest.raises(ApiError) as error:
        client.create_endpoint("default", "val-base", "demo-tiny-llama-base")

    assert error.value.status == 422
    assert "base model" in error.value.message
    assert "demo-tiny-llama-base" in error.value.message


def test_duplicate_name_in_project_is_409(client: Client) -> None:
    client.create_endpoint("default", "val-dup", "echo")

    with pytest.raises(ApiError) as error:
        client.create_endpoint("default", "VAL-dup", "echo")

    assert error.value.status == 409
    assert error.value.field == "name"
    assert error.value.message == (
        "an endpoint named 'val-dup' already exists in project 'default', and endpoint "
        "names ignore case, so 'VAL-dup' is taken too; choose another name"
    )


def test_unknown_project(client: Client) -> None:
    with pytest.raises(ApiError) as error:
        client.create_endpoint("nowhere", "val-project", "echo")

    assert error.value.status == 404
    assert "'nowhere'" in error.value.message


def test_unknown_field_is_rejected(server: BerthServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        json={"name": "val-extra", "model": "echo", "instance": 2},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "instance"


def test_malformed_json_is_400_with_envelope(server: BerthServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        content=b'{"name": ',
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert set(response.json()["error"]) >= {"code", "message"}
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/endpoints/val-no-such-endpoint/keys", {}),
        ("POST", "/endpoints/val-no-such-endpoint/keys", {"description": 5}),
        ("PATCH", "/endpoints/val-no-such-endpoint", {"instances": "two"}),
        ("PATCH", "/endpoints/val-no-such-endpoint/keys/some-key", {}),
    ],
)
def test_unknown_endpoint_is_404_before_body_check(
    server: BerthServer, method: str, path: str, body: dict[str, object]
) -> None:
    response = httpx.request(
        method, f"{server.url}/api/v1{path}", json=body, headers=auth_headers()
    )

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
    assert "'val-no-such-endpoint'" in response.json()["error"]["message"]


def test_unknown_key_is_404_before_body_check(client: Client, server: BerthServer) -> None:
    created = client.create_endpoint("default", "val-key-404", "echo")
    keys_url = f"{server.url}/api/v1/endpoints/{created['id']}/keys"

    unknown_key = httpx.patch(f"{keys_url}/no-such-key", json={}, headers=auth_headers())
    invalid_body = httpx.post(keys_url, json={}, headers=auth_headers())

    assert unknown_key.status_code == 404, unknown_key.text
    assert unknown_key.json()["error"]["field"] == "apikey"
    # On an endpoint that exists, the body is checked as before.
    assert invalid_body.status_code == 422, invalid_body.text
    assert invalid_body.json()["error"]["field"] == "description"


# Every body below is invalid. The request to the known resource checks that it gets 422
# once the lookup passes.
@pytest.mark.parametrize(
    ("method", "unknown_path", "known_path", "body", "field"),
    [
        ("PATCH", "/models/val-no-such", "/models/echo", {"sharing": "everyone"}, "model"),
        ("PATCH", "/tenants/val-no-such", "/tenants/default", {"disabled": "maybe"}, "tenant"),
        (
            "PUT",
            "/tenants/val-no-such/members/me",
            "/tenants/default/members/me",
            {"role": "Boss"},
            "tenant",
        ),
        (
            "PUT",
            "/tenants/default/members/val-no-such",
            "/tenants/default/members/me",
            {"role": "Boss"},
            "user",
        ),
        ("PATCH", "/users/val-no-such", "/users/me", {"disabled": "maybe"}, "user"),
        ("POST", "/users/val-no-such/keys", "/users/me/keys", {"description": 5}, "user"),
    ],
)
def test_unknown_resource_is_404_before_body_check(
    server: BerthServer,
    method: str,
    unknown_path: str,
    known_path: str,
    body: dict[str, object],
    field: str,
) -> None:
    api = f"{server.url}/api/v1"

    unknown = httpx.request(method, api + unknown_path, json=body, headers=auth_headers())
    known = httpx.request(method, api + known_path, json=body, headers=auth_headers())

    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["error"]["code"] == "not_found"
    assert unknown.json()["error"]["field"] == field
    assert "'val-no-such'" in unknown.json()["error"]["message"]
    assert known.status_code == 422, known.text


def test_no_credentials_is_401(server: BerthServer) -> None:
    response = httpx.get(f"{server.url}/api/v1/endpoints")

    assert response.status_code == 401
    assert "platform API key" in response.json()["error"]["message"]


def test_wrong_credentials_is_401(server: BerthServer) -> None:
    response = httpx.get(
        f"{server.url}/api/v1/endpoints", headers={"Authorization": "Bearer berth_pk_wrong"}
    )

    assert response.status_code == 401


def test_health_needs_no_credentials(server: BerthServer) -> None:
    assert httpx.get(f"{server.url}/api/v1/health").json()["status"] == "ok"


def test_openapi_schema_lists_routes(server: BerthServer) -> None:
    schema = httpx.get(f"{server.url}/api/v1/openapi.json").json()

    assert "/endpoints/{endpoint}/keys/{key}/revoke" in schema["paths"]
    assert "/models" in schema["paths"]


def test_openapi_schema_offers_no_null_description_change(server: BerthServer) -> None:
    # The API rejects a null description in a PATCH, so the schema must not offer one.
    schemas = httpx.get(f"{server.url}/api/v1/openapi.json").json()["components"]["schemas"]

    for name in ("ProjectUpdate", "EndpointUpdate", "ModelUpdate"):
        field = schemas[name]["properties"]["description"]
        assert field["type"] == "string", (name, field)
        assert "anyOf" not in field, (name, field)


def test_stale_version_is_409(client: Client) -> None:
    created = client.create_endpoint("default", "val-version", "echo")
    client.update_endpoint(created["id"], description="first", version=created["version"])

    with pytest.raises(ApiError) as error:
        client.update_endpoint(created["id"], description="second", version=created["version"])

    assert error.value.status == 409
    assert client.get_endpoint(created["id"])["description"] == "first"


def test_update_that_changes_nothing_keeps_version(client: Client) -> None:
    created = client.create_endpoint("default", "val-unchanged", "echo")
    client.update_endpoint(created["id"], description="same")
    before = client.get_endpoint(created["id"])

    unchanged = client.update_endpoint(
        created["id"],
        description="same",
        instances=before["instances"],
        share_with_all_tenants=before["share_with_all_tenants"],
        version=before["version"],
    )

    assert unchanged["version"] == before["version"]
    # A client that read the endpoint before that request can still change it.
    changed = client.update_endpoint(created["id"], description="other", version=before["version"])
    assert changed["version"] == before["version"] + 1


def test_endpoint_found_by_name_or_id(client: Client) -> None:
    created = client.create_endpoint("default", "val-lookup", "echo")

    assert client.get_endpoint("val-lookup")["id"] == created["id"]
    assert client.get_endpoint("VAL-LOOKUP", project="default")["id"] == created["id"]
    assert client.get_endpoint(created["id"])["name"] == "val-lookup"


def test_models_listed_with_filters(client: Client) -> None:
    everything = client.list_models()
    embedding = client.list_models(ml_app="Text Embedding")
    base = client.list_models(base=True)

    # The server is shared with other test files, which may have imported models, so
    # the built-in models are checked by name and the rest by their fields.
    names = {model["name"] for model in everything["items"]}
    assert {"all-MiniLM-L6-v2", "demo-tiny-llama", "echo"} <= names
    embedding_names = [model["name"] for model in embedding["items"]]
    assert "all-MiniLM-L6-v2" in embedding_names
    assert "demo-tiny-llama" not in embedding_names
    assert {model["ml_app"] for model in embedding["items"]} == {"text-embedding"}
    assert embedding["total"] == len(embedding["items"])
    assert "demo-tiny-llama-base" in [model["name"] for model in base["items"]]
    assert all(model["is_base"] for model in base["items"])


def test_unknown_ml_app_filter(client: Client) -> None:
    with pytest.raises(ApiError) as error:
        client.list_models(ml_app="Image Magic")

    assert error.value.status == 422
    assert "Image Magic" in error.value.message


def test_name_shaped_like_an_id_is_rejected(client: Client) -> None:
    with pytest.raises(ApiError) as error:
        client.create_endpoint("default", "0186cdbd-1111-4222-8333-444455556666", "echo")

    assert error.value.status == 422
    assert "form of an ID" in error.value.message


def test_id_in_upper_case_is_found(client: Client) -> None:
    created = client.create_endpoint("default", "val-upper-id", "echo")

    assert client.get_endpoint(created["id"].upper())["id"] == created["id"]


def test_boolean_instances_are_rejected(server: BerthServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        json={"name": "val-bool", "model": "echo", "instances": True},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "instances"


def test_malformed_json_names_the_body(server: BerthServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        content=b'{"name": "x",',
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"
    assert "not valid JSON" in response.json()["error"]["message"]
    # The decoder's reason and where it stopped, not only "JSON decode error".
    assert " at character 13" in response.json()["error"]["message"]


def test_empty_body_is_400(server: BerthServer) -> None:
    headers = auth_headers(**{"Content-Type": "application/json"})

    response = httpx.post(f"{server.url}/api/v1/endpoints", content=b"", headers=headers)
    unknown_endpoint = httpx.patch(
        f"{server.url}/api/v1/endpoints/val-no-such-endpoint", content=b"", headers=headers
    )

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert response.json()["error"]["field"] == "body"
    assert response.json()["error"]["message"].startswith(
        "request body is empty; POST /api/v1/endpoints requires a JSON object"
    )
    # The endpoint lookup comes first, as for a body that fails validation.
    assert unknown_endpoint.status_code == 404, unknown_endpoint.text


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b" \r\n", "request body is empty; POST /api/v1/endpoints requires a JSON object"),
        (b"null", "request body is JSON null, but POST /api/v1/endpoints requires a JSON object"),
        (b'["echo"]', "request body is a JSON array, but POST"),
        (b'{"name": "val-\xff"}', "request body is not valid UTF-8: byte 0xff at position 14"),
    ],
)
def test_body_without_json_object_is_400(
    client: Client, server: BerthServer, body: bytes, fragment: str
) -> None:
    before = endpoint_count(client)
    headers = auth_headers(**{"Content-Type": "application/json"})

    response = httpx.post(f"{server.url}/api/v1/endpoints", content=body, headers=headers)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert response.json()["error"]["field"] == "body"
    assert response.json()["error"]["message"].startswith(fragment)
    assert endpoint_count(client) == before


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_number_is_400(client: Client, server: BerthServer, constant: str) -> None:
    before = endpoint_count(client)
    body = f'{{"name": "val-nan", "model": "echo", "instances": {constant}}}'

    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        content=body.encode(),
        headers=auth_headers(**{"Content-Type": "application/json"}),
    )

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert f"{constant} is not a JSON number" in response.json()["error"]["message"]
    assert endpoint_count(client) == before


def test_wrong_method_names_allowed_methods(server: BerthServer) -> None:
    response = httpx.put(
        f"{server.url}/api/v1/endpoints",
        json={},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.json()["error"]["message"].startswith(
        "PUT is not allowed on /api/v1/endpoints; use "
    )
    assert "POST" in response.headers["allow"]


def test_unknown_api_route_is_named(server: BerthServer) -> None:
    response = httpx.get(f"{server.url}/api/v1/no-such-route", headers=auth_headers())

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["message"] == (
        "no API route /api/v1/no-such-route; the API reference is at /api/v1/docs"
    )


def test_empty_update_changes_nothing(client: Client) -> None:
    created = client.create_endpoint("default", "val-empty-patch", "echo")

    updated = client.update_endpoint(created["id"])

    assert updated["version"] == created["version"]


def auth_headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}", **extra}


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded"],
)
def test_body_that_is_not_json_is_415(server: BerthServer, content_type: str) -> None:
    with server.client() as client:
        before = endpoint_count(client)

    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        content=b'{"name": "val-text-body", "model": "echo"}',
        headers=auth_headers(**{"Content-Type": content_type}),
    )

    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["field"] == "Content-Type"
    assert f"'{content_type}'" in error["message"]
    assert "application/json" in error["message"]
    with server.client() as client:
        assert endpoint_count(client) == before


def test_body_without_content_type_is_415(server: BerthServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        content=b'{"name": "val-no-type", "model": "echo"}',
        headers=auth_headers(),
    )

    assert "content-type" not in response.request.headers
    assert response.status_code == 415, response.text
    assert "no Content-Type" in response.json()["error"]["message"]
    assert "application/json" in response.json()["error"]["message"]


def test_text_body_on_patch_is_415(client: Client, server: BerthServer) -> None:
    created = client.create_endpoint("default", "val-text-patch", "echo")

    response = httpx.patch(
        f"{server.url}/api/v1/endpoints/{created['id']}",
        content=b"description=new",
        headers=auth_headers(**{"Content-Type": "text/plain"}),
    )

    assert response.status_code == 415, response.text
    assert client.get_endpoint(created["id"])["description"] == created["description"]


def test_json_with_charset_is_accepted(server: BerthServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        content=b'{"name": "val-charset", "model": "echo"}',
        headers=auth_headers(**{"Content-Type": "application/json; charset=utf-8"}),
    )

    assert response.status_code == 201, response.text


def test_text_body_without_credentials_is_401(server: BerthServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        content=b"hello",
        headers={"Content-Type": "text/plain"},
    )

    assert response.status_code == 401


def test_bodyless_routes_need_no_content_type(client: Client, server: BerthServer) -> None:
    created = client.create_endpoint("default", "val-no-body", "echo")
    url = f"{server.url}/api/v1/endpoints/{created['id']}"

    stopped = httpx.post(f"{url}/stop", headers=auth_headers())
    restarted = httpx.post(f"{url}/restart", headers=auth_headers())
    # A content type on an empty body is harmless where the route reads no body.
    stopped_again = httpx.post(
        f"{url}/stop", headers=auth_headers(**{"Content-Type": "text/plain"})
    )
    deleted = httpx.delete(url, headers=auth_headers())

    assert "content-type" not in stopped.request.headers
    assert stopped.status_code == 200, stopped.text
    assert restarted.status_code == 200, restarted.text
    assert stopped_again.status_code == 200, stopped_again.text
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["state"] == "Deleting"


def test_import_path_of_wrong_type_names_path(server: BerthServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/models/import",
        json={"path": 5, "name": "val-import-type"},
        headers=auth_headers(),
    )

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "path"
    assert response.json()["error"]["message"].startswith("path: ")


def test_query_error_names_the_parameter(server: BerthServer) -> None:
    response = httpx.get(f"{server.url}/api/v1/models", params={"limit": 0}, headers=auth_headers())

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "limit"


def test_missing_body_names_the_body(server: BerthServer) -> None:
    response = httpx.post(f"{server.url}/api/v1/endpoints", headers=auth_headers())

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert response.json()["error"]["field"] == "body"


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("", "model is empty"),
        ("   ", "model is empty"),
        ("echo:", "checkpoint name after ':' is empty"),
        ("echo:  ", "checkpoint name after ':' is empty"),
        (":main", "model name before ':' is empty"),
    ],
)
def test_empty_model_reference_on_create(client: Client, model: str, fragment: str) -> None:
    before = endpoint_count(client)

    with pytest.raises(ApiError) as error:
        client.create_endpoint("default", "val-empty-ref", model)

    assert error.value.status == 422
    assert error.value.field == "model"
    assert fragment in error.value.message
    assert endpoint_count(client) == before


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("", "model is empty"),
        ("echo:", "checkpoint name after ':' is empty"),
        (":main", "model name before ':' is empty"),
    ],
)
def test_empty_model_reference_on_update(client: Client, model: str, fragment: str) -> None:
    created = client.create_endpoint("default", "val-empty-ref-patch", "echo")
    try:
        with pytest.raises(ApiError) as error:
            client.update_endpoint(created["id"], model=model)

        assert error.value.status == 422
        assert error.value.field == "model"
        assert fragment in error.value.message
        after = client.get_endpoint(created["id"])
        assert after["version"] == created["version"]
        assert after["model"]["name"] == "echo"
    finally:
        client.delete_endpoint(created["id"])


def test_delete_endpoint_is_audited(client: Client) -> None:
    created = client.create_endpoint("default", "val-audit-delete", "echo")

    client.delete_endpoint(created["id"])

    entries = client.list_audit(resource_id=created["id"])["items"]
    actions = [row["action"] for row in entries]
    assert actions[0] == "endpoint.deleted"
    assert actions[-1] == "endpoint.created"
    assert entries[0]["resource_name"] == "val-audit-delete"
    assert entries[0]["resource_type"] == "endpoint"
    assert entries[0]["actor"]["name"] == "admin"


# A line feed, a tab, ESC (which starts terminal escape sequences), DEL and a C1 control.
CONTROL_CHARACTERS = [
    ("\n", "the control character U+000A"),
    ("\t", "the control character U+0009"),
    ("\x1b", "the control character U+001B"),
    ("\x7f", "the control character U+007F"),
    ("\x85", "the control character U+0085"),
    ("\u2028", "the line or paragraph separator U+2028"),
    ("\u202e", "the bidirectional control character U+202E"),
]


def test_description_rejects_control_characters(server: BerthServer, client: Client) -> None:
    endpoint = client.create_endpoint("default", "val-desc", "echo")
    key_id = client.list_keys(endpoint["id"])[0]["id"]
    paths = [
        ("POST", "/projects", {"name": "val-desc"}),
        ("PATCH", "/projects/default", {}),
        ("POST", "/endpoints", {"name": "val-desc-2", "model": "echo"}),
        ("PATCH", f"/endpoints/{endpoint['id']}", {}),
        ("POST", f"/endpoints/{endpoint['id']}/keys", {}),
        ("PATCH", f"/endpoints/{endpoint['id']}/keys/{key_id}", {}),
        ("POST", "/users/me/keys", {}),
        ("POST", "/models", {"name": "val-desc", "ml_app": "echo"}),
        ("POST", "/models/import", {"path": "/nowhere", "name": "val-desc"}),
        ("PATCH", "/models/echo", {}),
    ]

    for character, code_point in CONTROL_CHARACTERS:
        for method, path, fields in paths:
            response = httpx.request(
                method,
                f"{server.url}/api/v1{path}",
                json={**fields, "description": f"line1{character}line2"},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )

            case = (code_point, method, path, response.text)
            assert response.status_code == 422, case
            error = response.json()["error"]
            assert error["field"] == "description", case
            expected = f"description: contains {code_point} at position 6"
            assert expected in error["message"], case

    client.delete_endpoint(endpoint["id"])


def test_null_description_is_rejected(server: BerthServer, client: Client) -> None:
    endpoint = client.create_endpoint("default", "val-null", "echo", description="kept")
    paths = ["/projects/default", f"/endpoints/{endpoint['id']}", "/models/echo"]

    for path in paths:
        response = httpx.patch(
            f"{server.url}/api/v1{path}",
            json={"description": None},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )

        assert response.status_code == 422, (path, response.text)
        error = response.json()["error"]
        assert error["field"] == "description", path
        assert error["message"].startswith(
            'description: null does not change or clear the description; send "" to clear it'
        ), path
    assert client.get_endpoint(endpoint["id"])["description"] == "kept"

    client.delete_endpoint(endpoint["id"])
