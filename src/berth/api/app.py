"""Assembly of the management API: routers, error envelope and OpenAPI schema."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from berth import __version__
from berth.api.routes import access, audit, endpoints, health, models, projects, tenants, users
from berth.errors import BerthError
from berth.service.sessions import LoginLimiter, TooManyAttempts

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def error_body(code: str, message: str, field: str | None = None) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def _field_path(location: tuple[object, ...] | list[object]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _berth_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BerthError)
    headers = None
    if isinstance(exc, TooManyAttempts):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            problems.append(("body", f"request body is not valid JSON: {error.get('msg')}"))
            continue
        field = _field_path(error.get("loc", ()))
        value = error.get("input")
        shown = "" if isinstance(value, dict) or value is None else f" (got {value!r:.60})"
        problems.append((field, f"{field}: {error.get('msg', 'invalid value')}{shown}"))
    first_field = problems[0][0] if problems else None
    message = "; ".join(text for _field, text in problems) or "invalid request"
    return JSONResponse(error_body("invalid_input", message, first_field), status_code=422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    # Reached only when two requests race past the same uniqueness check.
    logger.info("conflicting write in %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        error_body(
            "conflict",
            "the request conflicts with a change made at the same time "
            "(for example the same name); read the current state and retry",
        ),
        status_code=409,
    )


class CatchUnexpectedErrors:
    """Return 500 with the JSON envelope for any error that no handler took, and log it.

    Starlette's own last-resort handler re-raises after responding, which makes the
    server close the connection; this one ends the request cleanly instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            logger.exception("unexpected error in %s %s", scope["method"], scope["path"])
            if started:
                raise
            response = JSONResponse(
                error_body(
                    "internal_error", "internal server error; the server log has the details"
                ),
                status_code=500,
            )
            await response(scope, receive, send)


def create_api() -> FastAPI:
    api = FastAPI(
        title="Berth management API",
        version=__version__,
        description="Manage projects, models, endpoints and endpoint API keys.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    routers = (
        health.router,
        access.router,
        tenants.router,
        users.router,
        projects.router,
        models.router,
        endpoints.router,
        audit.router,
    )
    for router in routers:
        api.include_router(router)
    api.state.login_limiter = LoginLimiter()
    api.add_exception_handler(BerthError, _berth_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(IntegrityError, _integrity_error)
    api.add_middleware(CatchUnexpectedErrors)
    return api
