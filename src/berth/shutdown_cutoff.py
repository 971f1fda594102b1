"""Responses for the requests still in flight when the server's shutdown timeout runs out.

On SIGTERM uvicorn (0.55) waits up to `timeout_graceful_shutdown`, which is
BERTH_SHUTDOWN_TIMEOUT_S, for requests in flight, and then cancels their tasks. It
responds to a cancelled request whose response has not started with a plain-text 500 and
logs the CancelledError with a traceback. `ShutdownCutoff` catches the cancellation
first and ends each request in one of three ways, with one log line:

- a response that has not started becomes a 503 in the gateway's JSON error shape, with
  Retry-After, so a client knows to send the request again;
- an event stream that has started ends with an error event, as a stream whose instance
  fails midway does, because its status can no longer change;
- any other response that has started stays incomplete, so uvicorn closes the
  connection and the client sees a cut-off body rather than a short one that looks whole.
"""

import asyncio
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from berth.gateway.errors import openai_error_body
from berth.gateway.proxy import PATH_PREFIX

logger = logging.getLogger(__name__)

# Seconds a client should wait before it sends the request again: enough for a server
# that restarts at once to be listening again.
SHUTDOWN_RETRY_AFTER_S = "5"
_CODE = "server_shutting_down"
_ERROR_TYPE = "service_unavailable"
_EVENT_STREAM = b"text/event-stream"


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
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        progress = _ResponseProgress()

        async def tracked_send(message: Message) -> None:
            await send(message)
            progress.record(message)

        try:
            await self.app(scope, receive, tracked_send)
        except asyncio.CancelledError:
            # NOTE: this treats every cancellation that reaches the top of a request as
            # the server stopping. In uvicorn 0.55 only the graceful-shutdown timeout
            # cancels request tasks, and asyncio.run cancels what is left when it ends.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await self._end_cancelled(scope, progress, send)

    async def _end_cancelled(self, scope: Scope, progress: "_ResponseProgress", send: Send) -> None:
        request = f"{scope['method']} {scope['path']}"
        limit = f"BERTH_SHUTDOWN_TIMEOUT_S ({self.shutdown_timeout_s:g} s)"
        if progress.complete:
            return
        if not progress.started:
            logger.warning(
                "%s ran past %s while the server stopped; responded with 503 before its response "
                "started",
                request,
                limit,
            )
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self._unavailable_body)).encode()),
                (b"retry-after", SHUTDOWN_RETRY_AFTER_S.encode()),
                (b"connection", b"close"),
            ]
            if scope["path"].startswith(PATH_PREFIX):
                headers.extend(self._gateway_headers(scope["headers"]))
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": self._unavailable_body})
            return
        if progress.event_stream:
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
        logger.warning(
            "%s ran past %s while the server stopped; closed the connection in the middle "
            "of its response",
            request,
            limit,
        )


class _ResponseProgress:
    """How far the response of one request got: started, complete, and whether it is an
    event stream."""

    def __init__(self) -> None:
        self.started = False
        self.complete = False
        self.event_stream = False

    def record(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            for name, value in message.get("headers", ()):
                if name.lower() == b"content-type":
                    self.event_stream = value.lower().startswith(_EVENT_STREAM)
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
