"""The ASGI app of an instance: health, readiness, the model list and the prediction routes."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from berth.runtime.base import LoadedModel
from berth.runtime.config import RuntimeConfig
from berth.runtime.errors import SERVER_ERROR, APIError, internal_error
from berth.runtime.responses import JSONResponse
from berth.runtime.routes import (
    HANDLERS,
    SERVED_ROUTES,
    ClientDisconnected,
    Handler,
    client_closed_response,
)

logger = logging.getLogger("berth.runtime")

# The routes besides predictions that a 404 names. /health and /ready serve Berth's own
# checks and are left out, because callers through the gateway cannot reach them.
_INFO_ROUTES = ("GET /v1/models",)
_PROBE_PATHS = frozenset({"/health", "/ready"})


class ProgressTracker:
    """Counts requests in flight and remembers when response bytes were last sent.

    An instance whose requests are in flight but which sends nothing for a long time is
    stuck (a deadlocked model thread, for example) even though /health itself answers.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.in_flight = 0
        self.last_progress = clock()

    def started(self) -> None:
        if self.in_flight == 0:
            # Time spent idle is not a stall.
            self.last_progress = self._clock()
        self.in_flight += 1

    def progressed(self) -> None:
        self.last_progress = self._clock()

    def finished(self) -> None:
        self.in_flight -= 1
        self.last_progress = self._clock()

    def stalled_for(self) -> float:
        """Seconds without response bytes while requests are in flight; 0 when idle."""
        if self.in_flight <= 0:
            return 0.0
        return self._clock() - self.last_progress


class ProgressMiddleware:
    """Feeds a ProgressTracker from every request except the probes."""

    def __init__(self, app: ASGIApp, tracker: ProgressTracker) -> None:
        self._app = app
        self._tracker = tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _PROBE_PATHS:
            await self._app(scope, receive, send)
            return

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                self._tracker.progressed()
            await send(message)

        self._tracker.started()
        try:
            await self._app(scope, receive, tracked_send)
        finally:
            self._tracker.finished()


class RuntimeState:
    """The instance's model, set by the loader thread once loading has finished."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.started_at = int(time.time())
        self.model: LoadedModel | None = None
        self.load_failed = False
        self.progress = ProgressTracker()


def build_app(state: RuntimeState) -> Starlette:
    config = state.config
    served = SERVED_ROUTES[config.ml_app]

    async def health(request: Request) -> Response:
        stalled_s = state.progress.stalled_for()
        limit = config.stall_timeout_s
        if limit is not None and stalled_s > limit:
            return JSONResponse(
                {
                    "status": "stalled",
                    "detail": f"{state.progress.in_flight} requests in flight and no response "
                    f"data sent for {stalled_s:.0f} s (limit {limit:g} s)",
                },
                status_code=503,
            )
        body: dict[str, object] = {"status": "ok"}
        generator = state.model.generator if state.model is not None else None
        if generator is not None:
            body["queued_requests"] = generator.queued_requests
        return JSONResponse(body)

    async def ready(request: Request) -> Response:
        model = state.model
        if model is not None:
            body = {"status": "ready", "runtime": model.runtime, "runtime_note": model.runtime_note}
            return JSONResponse(body)
        # "failed" shows only briefly: after a load failure the process exits with status 3.
        status = "failed" if state.load_failed else "loading"
        return JSONResponse({"status": status}, status_code=503)

    async def models(request: Request) -> Response:
        entry = {
            "id": config.model_name,
            "object": "model",
            "created": state.started_at,
            "owned_by": "berth",
        }
        return JSONResponse({"object": "list", "data": [entry]})

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
    ]
    routes += [
        Route(path, _prediction_endpoint(path, HANDLERS[path], state), methods=["POST"])
        for path in served
    ]

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code == 404:
            return _route_not_found(request, state, served).to_response()
        if error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "POST")
            message = (
                f"Method {request.method} is not allowed on {request.url.path}. Use {allowed}."
            )
            return APIError(
                405, message, code="method_not_allowed", headers={"Allow": allowed}
            ).to_response()
        return APIError(error.status_code, str(error.detail)).to_response()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        logger.info("shutting down")
        if state.model is not None:
            state.model.close()

    return Starlette(
        routes=routes,
        middleware=[Middleware(ProgressMiddleware, tracker=state.progress)],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )


def _route_not_found(request: Request, state: RuntimeState, served: tuple[str, ...]) -> APIError:
    config = state.config
    route_list = ", ".join([f"POST {path}" for path in served] + list(_INFO_ROUTES))
    runtime = f" (runtime {state.model.runtime})" if state.model and state.model.runtime else ""
    return APIError(
        404,
        f"The {config.ml_app.display_name} instance of model '{config.model_name}'{runtime} "
        f"does not serve {request.method} {request.url.path}. It serves: {route_list}.",
        code="unknown_route",
    )


def _prediction_endpoint(
    path: str, handler: Handler, state: RuntimeState
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        model = state.model
        if model is None:
            return APIError(
                503,
                f"Model '{state.config.model_name}' is still loading. Retry in a moment.",
                error_type=SERVER_ERROR,
                code="model_loading",
                headers={"Retry-After": "1"},
            ).to_response()
        try:
            return await handler(request, state.config, model)
        except APIError as error:
            if error.status_code >= 500:
                logger.error("POST %s failed with %d: %s", path, error.status_code, error.message)
            return error.to_response()
        except (ClientDisconnect, ClientDisconnected):
            logger.info("client disconnected from POST %s before the response was ready", path)
            return client_closed_response()
        except Exception as error:
            logger.exception("POST %s failed with an unexpected error", path)
            return internal_error(error).to_response()

    return endpoint
