"""The ASGI app of an instance: health, readiness, the model list and the prediction routes."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

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

_INFO_ROUTES = ("GET /health", "GET /ready", "GET /v1/models")


class RuntimeState:
    """The instance's model, set by the loader thread once loading has finished."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.started_at = int(time.time())
        self.model: LoadedModel | None = None
        self.load_failed = False


def build_app(state: RuntimeState) -> Starlette:
    config = state.config
    served = SERVED_ROUTES[config.ml_app]

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        if state.model is not None:
            return JSONResponse({"status": "ready"})
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
            return _route_not_found(request, config, served).to_response()
        if error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "POST")
            message = (
                f"Method {request.method} is not allowed on {request.url.path}. Use {allowed}."
            )
            return APIError(405, message, headers={"Allow": allowed}).to_response()
        return APIError(error.status_code, str(error.detail)).to_response()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        logger.info("shutting down")
        if state.model is not None:
            state.model.close()

    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )


def _route_not_found(request: Request, config: RuntimeConfig, served: tuple[str, ...]) -> APIError:
    route_list = ", ".join([f"POST {path}" for path in served] + list(_INFO_ROUTES))
    return APIError(
        404,
        f"The {config.ml_app.display_name} instance of model '{config.model_name}' does not "
        f"serve {request.method} {request.url.path}. It serves: {route_list}.",
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
