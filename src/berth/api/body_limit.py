"""A limit on the size of request bodies, for the management API and the web UI.

Their JSON and form bodies are small, so they get a limit of their own,
BERTH_MAX_API_REQUEST_BYTES (1 MiB by default), apart from the prediction gateway's
BERTH_MAX_REQUEST_BYTES (8 MiB by default). RequestBodyLimit checks Content-Length
before reading anything, and counts the bytes of a chunked body while it reads it, so an
oversized body gets 413 without being buffered.
"""

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from berth.errors import RequestTooLarge

RenderError = Callable[[Scope, RequestTooLarge], Response]


class RequestBodyLimit:
    """Reject a request body larger than `max_bytes` with 413, rendered by `render`.

    The body is read in full before the app runs, which is what the API's JSON decoding
    and the UI's form parsing do anyway, and the app gets it back from `receive`. After
    the 413, uvicorn (0.55) discards the rest of the body as it arrives. The connection
    stays open, as after the gateway's 413, because closing it with unread data makes the
    client's TCP stack drop the response on the reset.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, render: RenderError) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is None and "transfer-encoding" not in headers:
            # No body.
            await self.app(scope, receive, send)
            return
        # isascii() first: str.isdigit() also accepts digits such as '²' that int() rejects.
        if declared is not None and declared.isascii() and declared.isdigit():
            if int(declared) > self.max_bytes:
                await self._reject(scope, receive, send)
                return

        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                # The client left, so no one would read a response.
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            chunks.append(chunk)
            more_body = message.get("more_body", False)

        body = b"".join(chunks)
        body_sent = False

        async def receive_body() -> Message:
            nonlocal body_sent
            if body_sent:
                return await receive()
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, receive_body, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = RequestTooLarge(
            f"request body is larger than the limit of {self.max_bytes} bytes; send a "
            "smaller body, or raise BERTH_MAX_API_REQUEST_BYTES on the Berth server",
            field="body",
        )
        await self.render(scope, error)(scope, receive, send)
