"""The gateway in front of a real echo endpoint: keys, status codes and balancing."""

import time

import httpx
import openai
import psutil
import pytest
from openai import OpenAI

from berth.client import Client
from tests.e2e.conftest import chat, create_live, wait_until


@pytest.fixture(scope="module")
def echo(client: Client) -> tuple[dict, str]:
    return create_live(client, "gw-echo", instances=2)


def test_bearer_and_key_header_both_work(echo: tuple[dict, str]) -> None:
    endpoint, key = echo

    by_bearer = chat(endpoint, key, "first words")
    by_header = chat(endpoint, "", "other words", key=key)

    assert by_bearer.status_code == 200
    assert by_bearer.json()["choices"][0]["message"]["content"] == "first words"
    assert by_header.status_code == 200
    assert by_header.json()["choices"][0]["message"]["content"] == "other words"


def test_requests_spread_over_both_instances(echo: tuple[dict, str]) -> None:
    endpoint, key = echo

    served_by = {chat(endpoint, key).headers["x-berth-instance"] for _ in range(8)}

    assert served_by == {row["id"] for row in endpoint["instance_list"]}


def test_missing_key_is_401(echo: tuple[dict, str]) -> None:
    endpoint, _key = echo

    response = chat(endpoint, "")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_unknown_key_is_401_without_echoing_it(echo: tuple[dict, str]) -> None:
    endpoint, _key = echo
    wrong = "berth_ek_this-key-does-not-exist"

    response = chat(endpoint, wrong)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert wrong not in response.text


def test_platform_key_is_401_with_hint(client: Client, echo: tuple[dict, str]) -> None:
    endpoint, _key = echo
    platform_key = client.create_platform_key("gateway test")

    response = chat(endpoint, platform_key["key"])
    client.revoke_platform_key(platform_key["id"])

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    message = response.json()["error"]["message"]
    assert "platform API key" in message
    assert "berth endpoint list-apikeys" in message
    assert platform_key["key"] not in response.text


def test_key_of_other_endpoint_is_401(client: Client, echo: tuple[dict, str]) -> None:
    endpoint, _key = echo
    other = client.create_endpoint("default", "gw-other", "echo")

    response = chat(endpoint, other["first_key"])

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "wrong_endpoint_key"


def test_unknown_endpoint_with_valid_key_is_401(echo: tuple[dict, str]) -> None:
    endpoint, key = echo
    missing = dict(
        endpoint,
        openai_base_url=endpoint["openai_base_url"].replace(
            endpoint["id"], "00000000-0000-0000-0000-000000000000"
        ),
    )

    response = chat(missing, key)

    # The same response as for a wrong endpoint, so endpoint IDs cannot be probed.
    assert response.status_code == 401


def post_chat_body(
    echo: tuple[dict, str], body: bytes, content_type: str = "application/json"
) -> httpx.Response:
    """POST raw bytes to the Echo endpoint's chat route with its key."""
    endpoint, key = echo
    return httpx.post(
        f"{endpoint['openai_base_url']}/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
    )


def test_openai_error_shape_for_malformed_json(echo: tuple[dict, str]) -> None:
    response = post_chat_body(echo, b'{"messages": [')

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "not valid JSON" in error["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"[1, 2]", "application/json", 400),
        (b"\xff\xfe not utf-8", "application/json", 400),
        (b"messages=hello", "application/x-www-form-urlencoded", 415),
        (b'{"messages": "not a list"}', "application/json", 400),
        (b"", "application/json", 400),
    ],
)
def test_bad_bodies_are_rejected(
    echo: tuple[dict, str], body: bytes, content_type: str, status: int
) -> None:
    response = post_chat_body(echo, body, content_type)

    assert response.status_code == status
    assert "error" in response.json()


def test_invalid_utf8_names_its_byte(echo: tuple[dict, str]) -> None:
    response = post_chat_body(echo, b'{"messages": "\xff\xfe"}')

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "request body is not valid UTF-8: byte 0xff at position 14; send JSON encoded as UTF-8"
    )


def test_oversized_body_is_413(echo: tuple[dict, str]) -> None:
    endpoint, key = echo
    huge = b'{"input": "' + b"x" * (9 * 1024 * 1024) + b'"}'

    response = httpx.post(
        f"{endpoint['openai_base_url']}/embeddings",
        content=huge,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unknown_route_is_404(echo: tuple[dict, str]) -> None:
    endpoint, key = echo

    response = httpx.post(
        f"{endpoint['url']}/v1/images/generations",
        json={"prompt": "a cat"},
        headers={"Authorization": f"Bearer {key}"},
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_route"


def test_models_route_lists_endpoint_model(echo: tuple[dict, str]) -> None:
    endpoint, key = echo

    response = httpx.get(
        f"{endpoint['openai_base_url']}/models", headers={"Authorization": f"Bearer {key}"}
    )

    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == ["echo"]


def test_predict_route(echo: tuple[dict, str]) -> None:
    endpoint, key = echo

    response = httpx.post(
        f"{endpoint['url']}/predict",
        json={"inputs": ["a", "b"]},
        headers={"Authorization": f"Bearer {key}"},
    )

    assert response.status_code == 200
    assert response.json()["predictions"] == ["a", "b"]


def test_stopped_endpoint_answers_503_without_retry(client: Client) -> None:
    endpoint, key = create_live(client, "gw-stopped")
    client.stop_endpoint(endpoint["id"])
    client.wait_for_state(endpoint["id"], {"Stopped"}, timeout_s=30, poll_s=0.1)
    requests: list[str] = []
    http_client = openai.DefaultHttpxClient(
        event_hooks={"request": [lambda request: requests.append(request.url.path)]}
    )
    openai_client = OpenAI(
        base_url=endpoint["openai_base_url"], api_key=key, http_client=http_client
    )

    response = wait_until(
        lambda: (r := chat(endpoint, key)).status_code == 503 and r,
        10,
        "the stopped endpoint to answer 503",
    )
    with pytest.raises(openai.APIStatusError) as raised:
        openai_client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hello"}]
        )

    assert response.json()["error"]["code"] == "endpoint_not_live"
    assert response.headers["retry-after"] == "5"
    assert response.headers["x-should-retry"] == "false"
    assert raised.value.status_code == 503
    # The openai package (3.63) retries a 503 twice unless x-should-retry is false.
    assert len(requests) == 1


def test_streaming_ends_with_done(echo: tuple[dict, str]) -> None:
    endpoint, key = echo
    started = time.monotonic()

    with httpx.stream(
        "POST",
        f"{endpoint['openai_base_url']}/chat/completions",
        json={"messages": [{"role": "user", "content": "one two three"}], "stream": True},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]

    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    assert time.monotonic() - started < 10


def _local_sockets(pid: int) -> list[tuple[str, str]]:
    """(name, status) of the process's Unix sockets bound to an abstract name."""
    return [
        (connection.laddr, connection.status)
        for connection in psutil.Process(pid).net_connections(kind="unix")
        if isinstance(connection.laddr, str) and connection.laddr.startswith(("\0", "@"))
    ]


def test_gateway_reaches_local_instances_over_unix_sockets(echo: tuple[dict, str]) -> None:
    endpoint, key = echo
    pids = {row["id"]: row["pid"] for row in endpoint["instance_list"]}

    served_by = {chat(endpoint, key).headers["x-berth-instance"] for _ in range(4)}

    for instance_id in served_by:
        names = {name.lstrip("\0@") for name, _status in _local_sockets(pids[instance_id])}
        # The listening socket and the gateway's kept-alive connection share the name.
        assert names == {f"berth-instance-{instance_id}"}
        assert len(_local_sockets(pids[instance_id])) >= 2
