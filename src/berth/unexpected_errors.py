"""The last-resort error handler of the management API and the web UI."""

import logging
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class CatchUnexpectedErrors:
    """Log any error that no handler took and reply with `fallback()`, a 500 response.

    Starlette's own last-resort handler re-raises after responding, which makes the
    server close the connection; this one ends the request cleanly instead. An error
    after the response has started is logged and raised, because the status is sent.
    """

    def __init__(self, app: ASGIApp, fallback: Callable[[], Response], logger: logging.Logger):
        self.app = app
        self.fallback = fallback
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_track(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_track)
        except Exception:
            self.logger.exception("unexpected error in %s %s", scope["method"], scope["path"])
            if started:
                raise
            await self.fallback()(scope, receive, send)
