"""Assembly of the management API: routers, error envelope and OpenAPI schema."""

import logging
import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from berth import __version__
from berth.api.body_limit import RequestBodyLimit
from berth.api.deps import describe_request
from berth.api.routes import access, audit, endpoints, health, models, projects, tenants, users
from berth.api.strict_json import is_json_content_type
from berth.db.transactions import busy_error, busy_failure
from berth.errors import (
    BerthError,
    FieldError,
    RequestTooLarge,
    plain_validation_message,
    value_text,
)
from berth.runtime.errors import json_type_name
from berth.service.sessions import LoginLimiter
from berth.settings import DEFAULT_MAX_API_REQUEST_BYTES
from berth.unexpected_errors import CatchUnexpectedErrors

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
_JSON_CONTENT_TYPE = "application/json"


def error_body(
    code: str, message: str, field: str | None = None, errors: list[FieldError] | None = None
) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    if errors:
        error["errors"] = [{"field": item.field, "message": item.message} for item in errors]
    return {"error": error}


# FastAPI starts each error location with the part of the request the value came from.
_LOCATION_PREFIXES = ("body", "query", "path", "header", "cookie")


def _field_path(location: tuple[object, ...] | list[object]) -> str:
    """Name the invalid field from a FastAPI error location such as ("body", "path").

    Only the first part is a prefix: a body field named "path" or "query" keeps its name.
    """
    parts = list(location)
    if parts and parts[0] in _LOCATION_PREFIXES:
        parts = parts[1:]
    return ".".join(str(part) for part in parts) or "body"


def _unsupported_media_type(request: Request, exc: RequestValidationError) -> JSONResponse | None:
    """Return a 415 when the body failed validation because it was not sent as JSON.

    FastAPI (0.165, with its default strict_content_type) decodes a body as JSON only
    under a JSON Content-Type, so a body without one, or with another, reaches
    validation as raw bytes and always fails against the route's body model.
    """
    body_failed = any(tuple(error.get("loc", ()))[:1] == ("body",) for error in exc.errors())
    if not body_failed or not isinstance(exc.body, bytes | bytearray) or not exc.body:
        return None
    content_type = request.headers.get("content-type")
    if content_type is None:
        message = (
            "the request has a body but no Content-Type header; "
            f"send the body as JSON with Content-Type: {_JSON_CONTENT_TYPE}"
        )
    elif is_json_content_type(content_type):
        return None
    else:
        message = (
            f"content type '{content_type}' is not supported; "
            f"send the body as JSON with Content-Type: {_JSON_CONTENT_TYPE}"
        )
    body = error_body("unsupported_media_type", message, "Content-Type")
    return JSONResponse(body, status_code=415)


async def _berth_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BerthError)
    headers = None
    if exc.retry_after_s is not None:
        headers = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    unsupported = _unsupported_media_type(request, exc)
    if unsupported is not None:
        return unsupported
    # An empty body and valid JSON that is not an object get 400, as at the gateway, and
    # so does a body that is not UTF-8 JSON, which StrictJSONRoute rejects before
    # validation. A JSON object with a wrong or missing field gets 422.
    if _body_is_missing(exc):
        message = (
            f"request body is empty; {request.method} {request.url.path} requires a JSON "
            f"object, sent with Content-Type: {_JSON_CONTENT_TYPE}"
        )
        return JSONResponse(error_body("invalid_json", message, "body"), status_code=400)
    kind = _non_object_body_kind(exc)
    if kind is not None:
        received = "JSON null" if kind == "null" else f"a JSON {kind}"
        message = (
            f"request body is {received}, but {request.method} {request.url.path} "
            "requires a JSON object"
        )
        return JSONResponse(error_body("invalid_json", message, "body"), status_code=400)
    problems: list[FieldError] = []
    for error in exc.errors():
        field = _field_path(error.get("loc", ()))
        value = error.get("input")
        # A missing field's input is the whole object that lacks it, so it is left out.
        missing = error.get("type") == "missing" or isinstance(value, dict)
        received = "" if missing else f" (got {value_text(value)})"
        problems.append(FieldError(field, f"{field}: {plain_validation_message(error)}{received}"))
    first_field = problems[0].field if problems else None
    message = "; ".join(problem.message for problem in problems) or "invalid request"
    body = error_body("invalid_input", message, first_field, problems)
    return JSONResponse(body, status_code=422)


def _body_is_missing(exc: RequestValidationError) -> bool:
    """Tell whether validation failed because a route that requires a body got none.

    FastAPI (0.165) reports an empty body as a "missing" error at ("body",). A body of
    JSON null fails with another error type.
    """
    return any(
        error.get("type") == "missing" and tuple(error.get("loc", ())) == ("body",)
        for error in exc.errors()
    )


def _non_object_body_kind(exc: RequestValidationError) -> str | None:
    """Return the JSON type of a body that is valid JSON but not an object, such as
    "array" or "null", or None when the body is an object.

    FastAPI (0.165) reports a whole body that fails the route's model at the location
    ("body",), with the decoded body as the input.
    """
    for error in exc.errors():
        if tuple(error.get("loc", ())) != ("body",) or error.get("type") == "missing":
            continue
        value = error.get("input")
        if not isinstance(value, dict):
            return json_type_name(value)
    return None


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = str(exc.detail)
    headers = exc.headers
    if exc.status_code == 404:
        root = request.scope.get("root_path", "")
        message = f"no API route {request.url.path}; the API reference is at {root}/docs"
    if exc.status_code == 405:
        # Starlette names the methods of the first route with this path only, and the API
        # has one route per method (GET and POST /endpoints, for example).
        allowed = ", ".join(_allowed_methods(request)) or (headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
        headers = {**(headers or {}), "Allow": allowed}
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Return the methods of every API route whose path template matches the request's."""
    root = request.scope.get("root_path", "")
    path = request.url.path.removeprefix(root)
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\{[^/}]+\}", "[^/]+", template), path):
            methods.update(method.upper() for method in operations)
    return sorted(methods)


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IntegrityError)
    # Reached only when two requests race past the same uniqueness check.
    # exc.orig is the driver's one-line message ("UNIQUE constraint failed: ..."). The
    # whole exception would add the SQL statement and the values of the row.
    logger.info("conflicting write in %s: %s", describe_request(request), exc.orig)
    return JSONResponse(
        error_body(
            "conflict",
            "the request conflicts with a change made at the same time "
            "(for example the same name); read the current state and retry",
        ),
        status_code=409,
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """Return 503 database_busy for a lock or serialization failure that no retry
    handled, such as one in a read. Re-raise any other database error, so that
    CatchUnexpectedErrors logs it and returns 500."""
    assert isinstance(exc, OperationalError)
    failure = busy_failure(exc)
    if failure is None:
        raise exc
    logger.warning(
        "%s failed with a %s; returning 503: %s", describe_request(request), failure, exc.orig
    )
    return await _berth_error(request, busy_error(failure))


def _internal_error() -> JSONResponse:
    return JSONResponse(
        error_body("internal_error", "internal server error; the server log has the details"),
        status_code=500,
    )


def _render_too_large(_scope: Scope, error: RequestTooLarge) -> JSONResponse:
    return JSONResponse(error.to_body(), status_code=error.status_code)


def create_api(
    max_request_bytes: int = DEFAULT_MAX_API_REQUEST_BYTES, web_ui_url: str | None = None
) -> FastAPI:
    """Build the management API. With `web_ui_url`, the description at the top of the API
    reference links to the web UI there."""
    description = "Manage projects, models, endpoints and endpoint API keys."
    if web_ui_url is not None:
        # Swagger UI renders the description as Markdown with its bundled renderer, so the
        # link needs no outside file.
        description += f"\n\n[Open the web UI]({web_ui_url}) to manage them in a browser."
    api = FastAPI(
        title="Berth management API",
        version=__version__,
        description=description,
        openapi_url="/openapi.json",
        # FastAPI's own docs page loads Swagger UI from a CDN; Berth serves its copy.
        docs_url=None,
        redoc_url=None,
    )
    _add_api_reference(api)
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
    # SQLAlchemy raises the lock and serialization failures of both drivers (sqlite3 and
    # psycopg 3) as OperationalError.
    api.add_exception_handler(OperationalError, _database_error)
    api.add_middleware(CatchUnexpectedErrors, fallback=_internal_error, logger=logger)
    # Added last, so it runs first, before anything reads the body.
    api.add_middleware(RequestBodyLimit, max_bytes=max_request_bytes, render=_render_too_large)
    return api


# Swagger UI 5 and its stylesheet, as bundled by the fastapi-offline package. Swagger UI
# reads OpenAPI 3.1, the version FastAPI writes, from 5.0 on.
_SWAGGER_UI_FILES = Path(fastapi_offline.__file__).parent / "static"


def _add_api_reference(api: FastAPI) -> None:
    """Serve the interactive API reference at /docs with Swagger UI's files from the
    fastapi-offline package, so the page works without internet access."""
    api.mount("/docs-assets", StaticFiles(directory=_SWAGGER_UI_FILES), name="docs-assets")

    @api.get("/docs", include_in_schema=False)
    async def api_reference(request: Request) -> HTMLResponse:
        prefix = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{prefix}/openapi.json",
            title="Berth management API",
            swagger_js_url=f"{prefix}/docs-assets/swagger-ui-bundle.js",
            swagger_css_url=f"{prefix}/docs-assets/swagger-ui.css",
            swagger_favicon_url=f"{prefix}/docs-assets/favicon.png",
            # Swagger UI otherwise sends the schema's address to validator.swagger.io
            # for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        )
