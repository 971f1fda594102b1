"""Responses for the requests still in flight when the server's shutdown timeout runs out.

On SIGTERM uvicorn (0.55) waits up to `timeout_graceful_shutdown`, which is
BERTH_SHUTDOWN_TIMEOUT_S, for requests in flight, and then cancels their tasks. It
responds to a cancelled request whose response has not started with a plain-text 500 and
logs the CancelledError with a traceback. `ShutdownCutoff` catches the cancellation
first and ends each request in one of three ways, with one log line:

- a response that has not started becomes a 503 in the gateway's JSON error shape, with
  Retry-After, so a client knows to send the request again;
- an event stream that has started ends with an error event, as a stream whose instance
  fails midway does, because its status can no longer change (the gateway marks such a
  request in its scope, under EVENT_STREAM_STARTED);
- any other response that has started stays incomplete, so uvicorn closes the
  connection and the client sees a cut-off body rather than a short one that looks whole.
"""

import asyncio
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from berth.gateway.errors import openai_error_body
from berth.gateway.proxy import EVENT_STREAM_STARTED, PATH_PREFIX

logger = logging.getLogger(__name__)

# Seconds a client should wait before it sends the request again: enough for a server
# that restarts at once to be listening again.
SHUTDOWN_RETRY_AFTER_S = "5"
_CODE = "server_shutting_down"
_ERROR_TYPE = "service_unavailable"


class ShutdownCutoff:
    """ASGI middleware that ends the requests which the server cancels when it stops."""

    def __init__(
        self,
        app: ASGIApp,
        shutdown_timeout_s: float,
        gateway_headers: Callable[[list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]],
    ) -> None:
        """`gateway_headers` returns the extra headers of a gateway response, such as
        CORS, from the request's headers."""
        self.app = app
        self.shutdown_timeout_s = shutdown_timeout_s
        self._gateway_headers = gateway_headers
        message = "the server stopped before it could respond to this request; send it again"
        self._unavailable_body = openai_error_body(message, code=_CODE, error_type=_ERROR_TYPE)
        stream_message = "the server stopped before the response was complete"
        self._stream_end_event = (
            b"\n\ndata: "
            + openai_error_body(stream_message, code=_CODE, error_type=_ERROR_TYPE)
            + b"\n\n"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # `send` is passed on as it is: wrapping it to follow each response cost about
        # 1 µs per request, which the gateway's hop would pay for every prediction.
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if scope["type"] != "http":
                raise
            # NOTE: this treats every cancellation that reaches the top of a request as
            # the server stopping. In uvicorn 0.55 only the graceful-shutdown timeout
            # cancels request tasks, and asyncio.run cancels what is left when it ends.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await self._end_cancelled(scope, send)

    async def _end_cancelled(self, scope: Scope, send: Send) -> None:
        request = f"{scope['method']} {scope['path']}"
        limit = f"BERTH_SHUTDOWN_TIMEOUT_S ({self.shutdown_timeout_s:g} s)"
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._unavailable_body)).encode()),
            (b"retry-after", SHUTDOWN_RETRY_AFTER_S.encode()),
            (b"connection", b"close"),
        ]
        if scope["path"].startswith(PATH_PREFIX):
            headers.extend(self._gateway_headers(scope["headers"]))
        try:
            await send({"type": "http.response.start", "status": 503, "headers": headers})
        except RuntimeError:
            # uvicorn refuses a second start: the response has started, or even ended.
            await self._end_started(scope, send, request, limit)
            return
        logger.warning(
            "%s ran past %s while the server stopped; responded with 503 before its response "
            "started",
            request,
            limit,
        )
        await send({"type": "http.response.body", "body": self._unavailable_body})

    async def _end_started(self, scope: Scope, send: Send, request: str, limit: str) -> None:
        if scope.get(EVENT_STREAM_STARTED):
            logger.warning(
                "%s ran past %s while the server stopped; ended its event stream with an "
                "error event",
                request,
                limit,
            )
            await send(
                {"type": "http.response.body", "body": self._stream_end_event, "more_body": True}
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        # Left incomplete, so uvicorn closes the connection and the client sees a cut-off
        # body rather than a short one that looks whole.
        logger.warning(
            "%s ran past %s while the server stopped, after its response had started; "
            "closed the connection",
            request,
            limit,
        )
