"""Malformed requests to the gateway: none may get a 5xx or harm the instances.

Hypothesis generates methods, paths, content types and bodies: random bytes (invalid
UTF-8 included), broken and truncated JSON, JSON of the wrong shape, known fields with
values of any type, empty and oversized bodies. Every response must be below 500 and,
when it is an error, carry the OpenAI error shape. Afterwards the endpoint must still be
served by the same healthy instances.
"""

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from berth.client import Client
from tests.faults.conftest import record_line
from tests.support import BerthServer

MAX_REQUEST_BYTES = 4096
# Responses to every fuzzed request, by status, for the report.
STATUSES: Counter[int] = Counter()
BODY_EXAMPLES = 800
ROUTING_EXAMPLES = 300

PATHS = ["v1/chat/completions", "v1/completions", "v1/embeddings", "v1/models", "predict"]
FIELDS = [
    "messages",
    "prompt",
    "input",
    "inputs",
    "parameters",
    "model",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "logprobs",
    "tools",
    "encoding_format",
    "dimensions",
    "echo",
    "best_of",
    "suffix",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["user", "system", "assistant", "tool", ""]) | json_values,
            "content": st.text(max_size=30) | json_values,
        },
    ),
    max_size=3,
)
request_objects = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=6
) | st.fixed_dictionaries({"messages": messages}, optional={"stream": st.booleans()})


def json_bytes(value: Any) -> bytes:
    # The standard library writes integers beyond 64 bits, which orjson refuses to.
    return json.dumps(value).encode()


bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    json_values.map(json_bytes),
    request_objects.map(json_bytes),
    # Valid JSON cut short at a random point.
    st.tuples(request_objects.map(json_bytes), st.integers(min_value=0, max_value=200)).map(
        lambda pair: pair[0][: pair[1]]
    ),
    # Invalid UTF-8 inside a string of an otherwise valid request.
    st.binary(min_size=1, max_size=20).map(
        lambda raw: b'{"messages": [{"role": "user", "content": "' + raw + b'"}]}'
    ),
    # Over the size limit, with and without a valid start.
    st.integers(min_value=MAX_REQUEST_BYTES + 1, max_value=3 * MAX_REQUEST_BYTES).map(
        lambda size: b'{"prompt": "' + b"x" * size + b'"}'
    ),
    # Deeply nested arrays.
    st.integers(min_value=100, max_value=2000).map(lambda depth: b"[" * depth + b"]" * depth),
)
json_content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]
)
content_types = (
    json_content_types
    | st.sampled_from(
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]
    )
    | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(
        # HTTP clients refuse header values with whitespace at either end.
        str.strip
    )
)
post_paths = st.sampled_from([path for path in PATHS if path != "v1/models"])
any_paths = st.sampled_from(PATHS) | st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?#%/"),
    max_size=20,
)


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    server = BerthServer(home, BERTH_MAX_REQUEST_BYTES=str(MAX_REQUEST_BYTES)).start()
    with server.client() as client:
        created = client.create_endpoint("default", "fuzz-echo", "echo", instances=2)
        endpoint = client.wait_for_state(created["id"], {"Live"}, timeout_s=60, poll_s=0.1)
        with httpx.Client(timeout=30, trust_env=False) as http:
            yield {
                "server": server,
                "client": client,
                "http": http,
                "endpoint": endpoint,
                "key": created["first_key"],
            }
    server.stop()


def send(
    target: dict[str, Any],
    method: str,
    path: str,
    content_type: str,
    body: bytes,
    key_in_header: bool,
) -> httpx.Response:
    key = target["key"]
    headers = {"key": key} if key_in_header else {"Authorization": f"Bearer {key}"}
    if content_type:
        headers["Content-Type"] = content_type
    return target["http"].request(
        method, f"{target['endpoint']['url']}/{path}", content=body, headers=headers
    )


def check_answer(response: httpx.Response) -> None:
    event(f"status {response.status_code}")
    STATUSES[response.status_code] += 1
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["message"]


FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(FUZZ_SETTINGS, max_examples=BODY_EXAMPLES)
@given(path=post_paths, content_type=json_content_types, body=bodies, key_in_header=st.booleans())
def test_malformed_bodies_get_client_errors(
    fuzz_target: dict[str, Any], path: str, content_type: str, body: bytes, key_in_header: bool
) -> None:
    check_answer(send(fuzz_target, "POST", path, content_type, body, key_in_header))


@settings(FUZZ_SETTINGS, max_examples=ROUTING_EXAMPLES)
@given(
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=any_paths,
    content_type=content_types,
    body=bodies,
)
def test_wrong_routes_get_client_errors(
    fuzz_target: dict[str, Any], method: str, path: str, content_type: str, body: bytes
) -> None:
    check_answer(send(fuzz_target, method, path, content_type, body, key_in_header=False))


def test_instances_unharmed_by_fuzzing(fuzz_target: dict[str, Any]) -> None:
    """Runs after the fuzz tests (file order): the same instances still serve."""
    client: Client = fuzz_target["client"]
    before = fuzz_target["endpoint"]["instance_list"]
    after = client.get_endpoint(fuzz_target["endpoint"]["id"])

    assert after["state"] == "Live"
    assert {row["pid"] for row in after["instance_list"]} == {row["pid"] for row in before}
    assert all(row["state"] == "Ready" for row in after["instance_list"])
    assert all(row["restart_count"] == 0 for row in after["instance_list"])
    response = fuzz_target["http"].post(
        f"{fuzz_target['endpoint']['openai_base_url']}/chat/completions",
        json={"messages": [{"role": "user", "content": "still here"}]},
        headers={"Authorization": f"Bearer {fuzz_target['key']}"},
    )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "still here"
    assert "Traceback" not in Path(fuzz_target["server"].log_path).read_text()
    statuses = ", ".join(f"{status} {count}" for status, count in sorted(STATUSES.items()))
    record_line(
        "gateway fuzz (malformed requests)",
        f"sent {sum(STATUSES.values())}, 5xx {sum(c for s, c in STATUSES.items() if s >= 500)} "
        f"({statuses}); both instances unharmed",
        {"sent": sum(STATUSES.values()), "by_status": dict(sorted(STATUSES.items()))},
    )
