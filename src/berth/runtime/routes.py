"""Handlers of the prediction routes: OpenAI chat, completions, embeddings, and /predict."""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from berth.runtime.base import GenerationParams, LoadedModel, TextStream
from berth.runtime.config import RuntimeConfig
from berth.runtime.errors import describe_value, invalid_request
from berth.runtime.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    PredictRequest,
    SamplingParameters,
    parse_request,
    validate_parameters,
)
from berth.runtime.responses import SSE_DONE, EventStreamResponse, JSONResponse, sse_event
from berth.states import MLApp

logger = logging.getLogger("berth.runtime")

CHAT_COMPLETIONS = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
PREDICT = "/predict"

# Status sent when the client disconnected before the response was ready. The client
# never receives it. It only marks the request in server-side traces.
_CLIENT_CLOSED_REQUEST = 499

Handler = Callable[[Request, RuntimeConfig, LoadedModel], Awaitable[Response]]


class ClientDisconnected(Exception):
    """The client closed the connection while its request was still running."""


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def collect_text(request: Request, stream: TextStream) -> str:
    """Return the whole text of `stream`, cancelling it if the client disconnects first."""
    if not stream.watch_disconnect:
        return await stream.collect()
    collect_task = asyncio.ensure_future(stream.collect())
    disconnect_task = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait(
            {collect_task, disconnect_task}, return_when=asyncio.FIRST_COMPLETED
        )
        if collect_task in done:
            return collect_task.result()
        raise ClientDisconnected()
    finally:
        disconnect_task.cancel()
        collect_task.cancel()
        await stream.aclose()


async def chat_completions(request: Request, config: RuntimeConfig, model: LoadedModel) -> Response:
    body = parse_request(ChatCompletionRequest, await request.body())
    assert model.generator is not None
    params = GenerationParams.from_request(body, body.requested_max_tokens, body.max_tokens_param)
    stream = await model.generator.start_chat(body.messages, params)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    if body.stream:
        events = _chat_events(stream, completion_id, created, config.model_name, body.include_usage)
        return EventStreamResponse(events)

    text = await collect_text(request, stream)
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "logprobs": None,
        "finish_reason": stream.finish_reason,
    }
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": config.model_name,
            "choices": [choice],
            "usage": _usage(stream.prompt_tokens, stream.completion_tokens),
        }
    )


async def _chat_events(
    stream: TextStream, completion_id: str, created: int, model_name: str, include_usage: bool
) -> AsyncIterator[bytes]:
    header = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model_name,
    }
    if include_usage:
        header["usage"] = None

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse_event({**header, "choices": [choice]})

    try:
        yield chunk({"role": "assistant", "content": ""})
        async for text in stream:
            yield chunk({"content": text})
        yield chunk({}, stream.finish_reason)
        if include_usage:
            usage = _usage(stream.prompt_tokens, stream.completion_tokens)
            yield sse_event({**header, "choices": [], "usage": usage})
        yield SSE_DONE
    finally:
        await stream.aclose()


async def completions(request: Request, config: RuntimeConfig, model: LoadedModel) -> Response:
    body = parse_request(CompletionRequest, await request.body())
    assert model.generator is not None
    params = GenerationParams.from_request(body, body.requested_max_tokens, body.max_tokens_param)
    stream = await model.generator.start_completion(body.prompt, params)
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    if body.stream:
        events = _completion_events(
            stream, completion_id, created, config.model_name, body.include_usage
        )
        return EventStreamResponse(events)

    text = await collect_text(request, stream)
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": stream.finish_reason}
    return JSONResponse(
        {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": config.model_name,
            "choices": [choice],
            "usage": _usage(stream.prompt_tokens, stream.completion_tokens),
        }
    )


async def _completion_events(
    stream: TextStream, completion_id: str, created: int, model_name: str, include_usage: bool
) -> AsyncIterator[bytes]:
    header = {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model_name,
    }
    if include_usage:
        header["usage"] = None

    def chunk(text: str, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return sse_event({**header, "choices": [choice]})

    try:
        async for text in stream:
            yield chunk(text)
        yield chunk("", stream.finish_reason)
        if include_usage:
            usage = _usage(stream.prompt_tokens, stream.completion_tokens)
            yield sse_event({**header, "choices": [], "usage": usage})
        yield SSE_DONE
    finally:
        await stream.aclose()


def _float32_base64(vector: Any) -> str:
    """Encode a vector as base64 of little-endian float32, as OpenAI's encoding_format=base64."""
    if hasattr(vector, "astype"):
        raw = vector.astype("<f4", copy=False).tobytes()
    else:
        raw = struct.pack(f"<{len(vector)}f", *vector)
    return base64.b64encode(raw).decode("ascii")


async def embeddings(request: Request, config: RuntimeConfig, model: LoadedModel) -> Response:
    body = parse_request(EmbeddingRequest, await request.body())
    embedder = model.embedder
    assert embedder is not None
    if body.dimensions is not None and body.dimensions != embedder.dimension:
        raise invalid_request(
            f"Invalid value for 'dimensions': {body.dimensions}. Model '{config.model_name}' "
            f"returns {embedder.dimension}-dimensional embeddings and cannot shorten them. "
            f"Omit 'dimensions' or set it to {embedder.dimension}.",
            param="dimensions",
        )

    result = await embedder.embed(body.input)
    as_base64 = body.encoding_format == "base64"
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": _float32_base64(vector) if as_base64 else vector,
        }
        for index, vector in enumerate(result.vectors)
    ]
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return JSONResponse(
        {"object": "list", "data": data, "model": config.model_name, "usage": usage}
    )


def _string_inputs(inputs: Sequence[Any]) -> list[str]:
    for index, item in enumerate(inputs):
        if not isinstance(item, str):
            raise invalid_request(
                f"Invalid value for 'inputs[{index}]': {describe_value(item)}. "
                "This model takes only strings as inputs.",
                param=f"inputs[{index}]",
            )
    return list(inputs)


async def predict(request: Request, config: RuntimeConfig, model: LoadedModel) -> Response:
    raw = await request.body()
    body = parse_request(PredictRequest, raw)
    predictions: Sequence[Any]
    if config.ml_app is MLApp.ECHO:
        predictions = body.inputs
    elif config.ml_app is MLApp.TEXT_EMBEDDING:
        assert model.embedder is not None
        result = await model.embedder.embed(_string_inputs(body.inputs))
        predictions = result.vectors
    else:
        assert model.generator is not None
        prompts = _string_inputs(body.inputs)
        sampling = validate_parameters(SamplingParameters, body.parameters, raw)
        params = GenerationParams.from_request(
            sampling, max_tokens_param="parameters.max_tokens", param_prefix="parameters."
        )
        texts = []
        for prompt in prompts:
            stream = await model.generator.start_completion(prompt, params)
            texts.append(await collect_text(request, stream))
        predictions = texts
    return JSONResponse({"predictions": predictions, "model": config.model_name})


HANDLERS: dict[str, Handler] = {
    CHAT_COMPLETIONS: chat_completions,
    COMPLETIONS: completions,
    EMBEDDINGS: embeddings,
    PREDICT: predict,
}

SERVED_ROUTES: dict[MLApp, tuple[str, ...]] = {
    MLApp.ECHO: (CHAT_COMPLETIONS, COMPLETIONS, EMBEDDINGS, PREDICT),
    MLApp.TEXT_GENERATION: (CHAT_COMPLETIONS, COMPLETIONS, PREDICT),
    MLApp.TEXT_EMBEDDING: (EMBEDDINGS, PREDICT),
}


def client_closed_response() -> Response:
    return Response(status_code=_CLIENT_CLOSED_REQUEST)
