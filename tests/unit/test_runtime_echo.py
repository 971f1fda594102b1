"""The Echo runtime as a subprocess: every route, streaming, and the error bodies."""

from __future__ import annotations

import base64
import math
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from berth.json_nesting import MAX_JSON_DEPTH
from tests.runtime_support import RuntimeProcess, wait_until

MODEL_NAME = "echo-test"


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    log_path = tmp_path_factory.mktemp("echo") / "runtime.log"
    runtime = RuntimeProcess("echo", "", MODEL_NAME, log_path)
    try:
        runtime.wait_for("/ready", timeout_s=20)
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture(scope="module")
def client(echo: RuntimeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{echo.base_url}/v1", api_key="unused", max_retries=0)


def post(echo: RuntimeProcess, path: str, body: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(
        echo.base_url + path,
        content=content,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )


def test_health_ready_and_models(echo: RuntimeProcess) -> None:
    assert httpx.get(echo.base_url + "/health").json() == {"status": "ok", "queued_requests": 0}
    ready = httpx.get(echo.base_url + "/ready").json()
    assert ready == {"status": "ready", "runtime": "echo", "runtime_note": ""}

    models = httpx.get(echo.base_url + "/v1/models").json()
    assert models["object"] == "list"
    assert len(models["data"]) == 1
    entry = models["data"][0]
    assert entry["id"] == MODEL_NAME
    assert entry["object"] == "model"
    assert entry["owned_by"] == "berth"
    assert isinstance(entry["created"], int)


def test_openai_client_lists_model(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL_NAME]


def test_chat_returns_last_user_message(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="any-name",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "hello there  world"},
        ],
    )

    assert response.object == "chat.completion"
    assert response.model == MODEL_NAME
    assert response.id.startswith("chatcmpl-")
    assert len(response.choices) == 1
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content == "hello there  world"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None
    assert response.usage.prompt_tokens == 9
    assert response.usage.completion_tokens == 3
    assert response.usage.total_tokens == 12


def test_chat_accepts_text_parts(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL_NAME,
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "two"}],
            }
        ],
    )

    assert response.choices[0].message.content == "part one\ntwo"


def test_chat_stream_sends_word_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert contents == ["one", " two", " three"]
    finish_chunks = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish_chunks) == 1
    assert finish_chunks[0].choices[0].finish_reason == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.prompt_tokens == 3
    assert usage_chunk.usage.completion_tokens == 3
    assert len({chunk.id for chunk in chunks}) == 1


def test_chat_stream_raw_events(echo: RuntimeProcess) -> None:
    body = {"messages": [{"role": "user", "content": "a b"}], "stream": True}
    with httpx.stream("POST", echo.base_url + "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()

    events = raw.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    payloads = [orjson.loads(event.removeprefix("data: ")) for event in events[:-2]]
    assert all(payload["object"] == "chat.completion.chunk" for payload in payloads)
    # Without include_usage no chunk carries a usage field.
    assert all("usage" not in payload for payload in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"


def test_chat_max_tokens_and_stop(client: openai.OpenAI) -> None:
    limited = client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "one two three four"}],
        max_tokens=2,
    )
    assert limited.choices[0].message.content == "one two"
    assert limited.choices[0].finish_reason == "length"
    assert limited.usage is not None
    assert limited.usage.completion_tokens == 2

    stopped = client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "one two three four"}],
        stop=["thr", "four"],
    )
    assert stopped.choices[0].message.content == "one two "
    assert stopped.choices[0].finish_reason == "stop"


def test_completion_returns_prompt(client: openai.OpenAI) -> None:
    response = client.completions.create(model=MODEL_NAME, prompt="to be or not")

    assert response.object == "text_completion"
    assert response.model == MODEL_NAME
    assert response.choices[0].text == "to be or not"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None
    assert response.usage.prompt_tokens == 4
    assert response.usage.completion_tokens == 4


def test_completion_accepts_list_of_one_prompt(echo: RuntimeProcess) -> None:
    response = post(echo, "/v1/completions", {"prompt": ["only one"]})

    assert response.status_code == 200
    assert response.json()["choices"][0]["text"] == "only one"


def test_completion_stream(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model=MODEL_NAME,
        prompt="to be or not",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert text == "to be or not"
    finish = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finish[-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_embeddings_are_deterministic_unit_vectors(client: openai.OpenAI) -> None:
    first = client.embeddings.create(model=MODEL_NAME, input=["alpha", "beta", ""])
    second = client.embeddings.create(model=MODEL_NAME, input="beta")

    assert first.model == MODEL_NAME
    assert [item.index for item in first.data] == [0, 1, 2]
    for item in first.data:
        assert len(item.embedding) == 8
        assert math.isclose(math.hypot(*item.embedding), 1.0, rel_tol=1e-5)
    assert first.data[0].embedding != first.data[1].embedding
    assert second.data[0].embedding == first.data[1].embedding
    assert first.usage.prompt_tokens == 2
    assert first.usage.total_tokens == 2


def test_embeddings_base64_matches_floats(echo: RuntimeProcess) -> None:
    floats = post(echo, "/v1/embeddings", {"input": "some text"}).json()
    encoded = post(
        echo, "/v1/embeddings", {"input": "some text", "encoding_format": "base64"}
    ).json()

    raw = base64.b64decode(encoded["data"][0]["embedding"])
    decoded = list(struct.unpack("<8f", raw))
    assert decoded == floats["data"][0]["embedding"]


def test_predict_returns_inputs_unchanged(echo: RuntimeProcess) -> None:
    inputs = ["text", 3, {"nested": [1, 2]}, None]
    response = post(echo, "/predict", {"inputs": inputs})

    assert response.status_code == 200
    assert response.json() == {"predictions": inputs, "model": MODEL_NAME}


def test_unknown_route_lists_served_routes(echo: RuntimeProcess) -> None:
    response = post(echo, "/v1/images/generations", {"prompt": "x"})

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "unknown_route"
    message = error["message"]
    assert "Echo" in message
    assert "/v1/images/generations" in message
    for route in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/predict"):
        assert route in message


def test_wrong_method_is_405(echo: RuntimeProcess) -> None:
    response = httpx.get(echo.base_url + "/v1/chat/completions")

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "method_not_allowed"
    assert "GET" in error["message"]
    assert "/v1/chat/completions" in error["message"]


def test_malformed_json_names_position(echo: RuntimeProcess) -> None:
    response = post(echo, "/v1/chat/completions", b'{"messages": [}')

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "not valid JSON" in error["message"]
    assert "column" in error["message"]
    assert error["param"] is None


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 1000, 2000])
def test_too_deep_body_gets_api_message(echo: RuntimeProcess, depth: int) -> None:
    # The object is the first level, so its arrays start at the second. orjson alone
    # accepts 1,024 levels.
    body = b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"

    response = post(echo, "/v1/chat/completions", body)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == (
        f"The request body is not valid JSON at character {13 + MAX_JSON_DEPTH - 1}: depth "
        f"limit exceeded, arrays and objects are nested more than {MAX_JSON_DEPTH} levels "
        f"deep; send JSON with at most {MAX_JSON_DEPTH} levels of nesting."
    )


def test_body_at_depth_limit_reaches_validation(echo: RuntimeProcess) -> None:
    depth = MAX_JSON_DEPTH - 1
    body = b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"

    response = post(echo, "/v1/chat/completions", body)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "messages[0]"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null", b""])
def test_non_object_body_is_400(echo: RuntimeProcess, body: bytes) -> None:
    response = post(echo, "/v1/completions", body)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "body", "param", "fragment"),
    [
        ("/v1/chat/completions", {}, "messages", "Missing"),
        ("/v1/chat/completions", {"messages": []}, "messages", "at least 1"),
        ("/v1/chat/completions", {"messages": "hi"}, "messages", '"hi"'),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            '"robot"',
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
            "text",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "max_tokens": "5"},
            "max_tokens",
            '"5"',
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "temperature": 2.5},
            "temperature",
            "2.5",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "top_p": 0},
            "top_p",
            "0",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]},
            "stop",
            "at most 4",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "stream": "yes"},
            "stream",
            '"yes"',
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
            "tools",
            "tool calling is not supported",
        ),
        (
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_object"},
            },
            "response_format",
            "response_format type 'json_object' is not supported",
        ),
        (
            "/v1/completions",
            {"prompt": "x", "response_format": {"type": "json_schema"}},
            "response_format",
            "only plain text can be generated here",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "response_format": "json"},
            "response_format",
            "only plain text can be generated here",
        ),
        ("/v1/completions", {"prompt": ["a", "b"]}, "prompt", "one string"),
        ("/v1/completions", {"prompt": [1, 2, 3]}, "prompt", "token-id"),
        ("/v1/completions", {"prompt": "x", "n": 3}, "n", "n=1"),
        ("/v1/completions", {"prompt": "x", "frequency_penalty": 5}, "frequency_penalty", "2"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "presence_penalty": -3},
            "presence_penalty",
            "-2",
        ),
        (
            "/v1/completions",
            {"prompt": "x", "logit_bias": {"token": 5}},
            "logit_bias",
            'key "token" is not a token id',
        ),
        (
            "/v1/completions",
            {"prompt": "x", "logit_bias": {"-3": 5}},
            "logit_bias",
            'key "-3" is not a token id',
        ),
        (
            "/v1/completions",
            {"prompt": "x", "logit_bias": {"7": 101}},
            "logit_bias",
            "the bias of token 7 is 101, but must be a number from -100 to 100",
        ),
        (
            "/v1/completions",
            {"prompt": "x", "logit_bias": {"02000": 100, "2000": -100}},
            "logit_bias",
            'keys "02000" and "2000" both name token 2000',
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "logit_bias": {"7": "up"}},
            "logit_bias",
            'the bias of token 7 is "up"',
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "logit_bias": [7]},
            "logit_bias",
            "expected an object that maps token ids to numbers",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "tool", "content": "42", "tool_call_id": "call_1"}]},
            "messages[0].role",
            "this server does not support tool calling. Send the result in a 'user' message",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "role 'robot' is not supported; use 'system', 'developer', 'user' or 'assistant'",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "stream_options": {}},
            "stream_options",
            'stream_options applies only to streamed responses; send it with "stream": true',
        ),
        (
            "/v1/completions",
            {"prompt": "x", "stream": False, "stream_options": {"include_usage": True}},
            "stream_options",
            'stream_options applies only to streamed responses; send it with "stream": true',
        ),
        ("/v1/embeddings", {"input": "x", "user": 5}, "user", "5"),
        ("/v1/embeddings", {"input": [[1, 2, 3]]}, "input", "only text input"),
        ("/v1/embeddings", {"input": []}, "input", "at least one"),
        ("/v1/embeddings", {"input": ["ok", 5]}, "input", "item 1"),
        ("/v1/embeddings", {"input": "x", "encoding_format": "int8"}, "encoding_format", "int8"),
        ("/v1/embeddings", {"input": "x", "dimensions": 4}, "dimensions", "8"),
        ("/predict", {"inputs": []}, "inputs", "at least 1"),
        ("/predict", {"inputs": "x"}, "inputs", '"x"'),
    ],
)
def test_invalid_field_names_param(
    echo: RuntimeProcess, path: str, body: dict[str, object], param: str, fragment: str
) -> None:
    response = post(echo, path, body)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert f"'{param}'" in error["message"]
    assert fragment.lower() in error["message"].lower()


@pytest.mark.parametrize(
    ("path", "body", "param", "value"),
    [
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}]},
            "max_tokens",
            4097,
        ),
        ("/v1/completions", {"prompt": "x"}, "max_tokens", 5000),
        ("/v1/completions", {"prompt": "x"}, "max_completion_tokens", 5000),
        # Beyond 64 bits, which orjson decodes as a float.
        ("/v1/completions", {"prompt": "x"}, "max_tokens", 2**70),
    ],
)
def test_max_tokens_above_limit_is_invalid_value(
    echo: RuntimeProcess, path: str, body: dict[str, object], param: str, value: int
) -> None:
    # httpx writes the body with the json module, which keeps the integer exact.
    response = httpx.post(echo.base_url + path, json={**body, param: value}, timeout=10)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_value"
    assert error["param"] == param
    assert error["message"] == (
        f"{param} is {value}, but this endpoint generates at most 4096 tokens per completion. "
        f"Set {param} to at most 4096."
    )


def test_max_tokens_at_limit_is_accepted(client: openai.OpenAI) -> None:
    response = client.completions.create(model=MODEL_NAME, prompt="a b c", max_tokens=4096)

    assert response.choices[0].text == "a b c"


def test_penalties_in_range_are_accepted(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "same words"}],
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        user="reporting-job",
    )

    assert response.choices[0].message.content == "same words"


def test_plain_text_response_format_is_accepted(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "plain words"}],
        response_format={"type": "text"},
    )

    assert response.choices[0].message.content == "plain words"


def test_openai_client_rejects_n_2(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": "x"}], n=2
        )

    assert caught.value.status_code == 400
    assert caught.value.param == "n"


def test_echo_imports_no_model_libraries() -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from berth.runtime.__main__ import main\n"
        "from berth.runtime.config import RuntimeConfig\n"
        "from berth.runtime.loading import load_model\n"
        "from berth.states import MLApp\n"
        "load_model(RuntimeConfig(MLApp.ECHO, None, 'e', 'i'))\n"
        "heavy = ('torch', 'transformers', 'sentence_transformers')\n"
        "print(','.join(name for name in heavy if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )

    assert result.stdout.strip() == ""


def test_serves_on_inherited_socket(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "berth.runtime",
        "--ml-app",
        "echo",
        "--model-path",
        "",
        "--model-name",
        "fd-echo",
        "--fd",
        str(listener.fileno()),
    ]
    log_file = (tmp_path / "runtime.log").open("wb")
    process = subprocess.Popen(
        command, pass_fds=[listener.fileno()], stdout=subprocess.DEVNULL, stderr=log_file
    )
    listener.close()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (tmp_path / "runtime.log").read_text()
        return httpx.get(url + "/ready", timeout=2).status_code == 200

    try:
        wait_until(ready, timeout_s=20, description="the runtime on an inherited socket")
        response = httpx.post(url + "/v1/completions", json={"prompt": "via fd"})
        assert response.json()["choices"][0]["text"] == "via fd"
        assert response.json()["model"] == "fd-echo"
    finally:
        process.terminate()
        process.wait(timeout=15)
        log_file.close()


@pytest.mark.parametrize(
    "extra",
    [
        {"model": "gpt-4o-mini"},
        {},
        {"model": "echo-test", "made_up_option": 1},
    ],
)
def test_any_model_name_accepted(echo: RuntimeProcess, extra: dict[str, object]) -> None:
    # The endpoint picks the model, so any model name, none, or an unknown field passes.
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}

    response = post(echo, "/v1/chat/completions", body)

    assert response.status_code == 200, response.text
    assert response.json()["model"] == MODEL_NAME
