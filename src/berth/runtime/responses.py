"""JSON and server-sent-event responses encoded with orjson."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from berth.runtime.errors import APIError, internal_error

logger = logging.getLogger("berth.runtime")

# NumPy arrays (embedding vectors) serialize without a conversion to lists.
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY

SSE_DONE = b"data: [DONE]\n\n"


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_ORJSON_OPTIONS)


def sse_event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload, option=_ORJSON_OPTIONS) + b"\n\n"


class EventStreamResponse(StreamingResponse):
    """A text/event-stream response that always closes its event iterator.

    Closing the iterator runs its `finally` blocks, which stop the generation when the
    client disconnects mid-stream. An error raised while streaming becomes an
    OpenAI error event, because the status line has already been sent.
    """

    def __init__(self, events: AsyncIterator[bytes]) -> None:
        self._events = events
        super().__init__(
            self._guarded(events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._events.aclose()  # type: ignore[attr-defined]

    @staticmethod
    async def _guarded(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield event
        except APIError as error:
            yield sse_event(error.body())
        except Exception as error:
            logger.exception("streamed response failed")
            yield sse_event(internal_error(error).body())
