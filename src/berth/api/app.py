"""Assembly of the management API: routers, error envelope and OpenAPI schema."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from berth import __version__
from berth.api.routes import endpoints, health, models, projects
from berth.errors import BerthError

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
    return JSONResponse(exc.to_body(), status_code=exc.status_code)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
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


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error in %s %s", request.method, request.url.path)
    return JSONResponse(
        error_body("internal_error", "internal server error; the server log has the details"),
        status_code=500,
    )


def create_api() -> FastAPI:
    api = FastAPI(
        title="Berth management API",
        version=__version__,
        description="Manage projects, models, endpoints and endpoint API keys.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    for router in (health.router, projects.router, models.router, endpoints.router):
        api.include_router(router)
    api.add_exception_handler(BerthError, _berth_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(IntegrityError, _integrity_error)
    api.add_exception_handler(Exception, _unexpected_error)
    return api
