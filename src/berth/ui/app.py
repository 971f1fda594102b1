"""Assembly of the web UI: routes, templates, static files and error pages."""

import logging
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from berth import __version__
from berth.api.app import API_PREFIX
from berth.api.body_limit import RequestBodyLimit
from berth.db.engine import Database
from berth.db.transactions import busy_error, busy_failure
from berth.errors import BerthError, RequestTooLarge
from berth.names import MAX_NAME_LENGTH, NAME_PATTERN
from berth.settings import Settings
from berth.ui import model_hub, views
from berth.ui.access import SignInRequired, sign_in_url
from berth.ui.display import checkpoint_choices, short_checksum
from berth.unexpected_errors import CatchUnexpectedErrors

logger = logging.getLogger(__name__)

UI_PREFIX = "/ui"
_HERE = Path(__file__).parent

# Scripts and styles come only from this server, and pages cannot be framed. The
# templates use no inline script or style, so none has to be allowed.
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Add the security headers above to every response of the UI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _format_datetime(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def create_templates(prefix: str) -> Jinja2Templates:
    environment = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(
        ui=prefix,
        api=API_PREFIX,
        version=__version__,
        name_pattern=NAME_PATTERN,
        max_name_length=MAX_NAME_LENGTH,
    )
    environment.filters["datetime"] = _format_datetime
    environment.filters["short_checksum"] = short_checksum
    environment.filters["checkpoint_choices"] = checkpoint_choices
    return Jinja2Templates(env=environment)


def create_ui(settings: Settings, database: Database, prefix: str = UI_PREFIX) -> Starlette:
    """Build the UI app; mount it at `prefix`, which its links and redirects use."""
    routes = [
        Route("/", views.dashboard, name="dashboard"),
        Route("/login", views.login_page, name="login"),
        Route("/tenant", views.switch_tenant, methods=["POST"], name="switch_tenant"),
        Route("/projects", views.project_list, name="projects"),
        Route("/projects/{project}", views.project_page, name="project"),
        Route("/endpoints/{endpoint}", views.endpoint_page, name="endpoint"),
        Route("/models", model_hub.model_hub_page, name="models"),
        Route("/fragments/live-endpoints", views.live_endpoints_fragment),
        Route("/fragments/projects/{project}/endpoints", views.project_endpoints_fragment),
        Route("/fragments/endpoints/{endpoint}/details", views.endpoint_details_fragment),
        Route("/fragments/model-hub", model_hub.model_hub_fragment),
        Route("/fragments/models", model_hub.model_list_fragment),
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
    ]

    async def sign_in_required(request: Request, _exc: Exception) -> Response:
        if _is_fragment(request):
            # A poll or a dialog cannot follow a redirect to a page; the script
            # sends the person to the sign-in page on 401.
            return Response("sign in again", status_code=401)
        return RedirectResponse(sign_in_url(prefix, request), status_code=303)

    async def berth_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BerthError)
        return _error_page(request, exc.status_code, exc.message, exc.retry_after_s)

    async def database_error(request: Request, exc: Exception) -> Response:
        # As in the API, a lock or serialization failure that no retry handled gets 503.
        # Any other database error goes on to CatchUnexpectedErrors, which returns 500.
        assert isinstance(exc, OperationalError)
        failure = busy_failure(exc)
        if failure is None:
            raise exc
        logger.warning(
            "%s %s failed with a %s; returning 503: %s",
            request.method,
            request.url.path,
            failure,
            exc.orig,
        )
        return await berth_error(request, busy_error(failure))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = "page not found" if exc.status_code == 404 else str(exc.detail)
        return _error_page(request, exc.status_code, message)

    app = Starlette(
        routes=routes,
        exception_handlers={
            SignInRequired: sign_in_required,
            BerthError: berth_error,
            HTTPException: http_error,
            OperationalError: database_error,
        },
    )
    templates = create_templates(prefix)

    def error_page() -> HTMLResponse:
        message = "Berth failed to show this page; the server log has the details"
        page = templates.get_template("error.html").render(status_code=500, message=message)
        return HTMLResponse(page, status_code=500)

    app.add_middleware(CatchUnexpectedErrors, fallback=error_page, logger=logger)
    app.add_middleware(
        RequestBodyLimit, max_bytes=settings.max_api_request_bytes, render=_render_too_large
    )
    # Outermost, so the 413 of RequestBodyLimit gets the headers too.
    app.add_middleware(SecurityHeaders)
    app.state.settings = settings
    app.state.database = database
    app.state.prefix = prefix
    app.state.templates = templates
    return app


def _render_too_large(scope: Scope, error: RequestTooLarge) -> Response:
    return _error_page(Request(scope), error.status_code, error.message)


def _is_fragment(request: Request) -> bool:
    # Under a Mount, the scope's path still starts with the mount's root_path.
    path: str = request.scope["path"]
    root_path: str = request.scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    return path.startswith("/fragments/")


def _error_page(
    request: Request, status_code: int, message: str, retry_after_s: int | None = None
) -> Response:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    if _is_fragment(request):
        return Response(message, status_code=status_code, media_type="text/plain", headers=headers)
    templates: Jinja2Templates = request.app.state.templates
    context = {"status_code": status_code, "message": message}
    return templates.TemplateResponse(
        request, "error.html", context, status_code=status_code, headers=headers
    )
