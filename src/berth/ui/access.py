"""The web session behind a page request's cookie, and its active tenant."""

from urllib.parse import quote

from sqlalchemy.orm import Session
from starlette.requests import Request

from berth.api.deps import SESSION_COOKIE
from berth.auth import Principal, authenticate_session
from berth.errors import Forbidden, NotFound, Unauthenticated
from berth.service import sessions


class SignInRequired(Exception):
    """The request has no valid web session; the page redirects to the sign-in page."""


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def session_token(request: Request) -> str:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    return token


def current_principal(request: Request, session: Session) -> Principal:
    """Resolve the cookie into a Principal acting in the session's active tenant."""
    token = session_token(request)
    address = client_address(request)
    try:
        return authenticate_session(session, token, None, address)
    except Unauthenticated as exc:
        raise SignInRequired from exc
    except (NotFound, Forbidden):
        # The session's tenant was disabled, or the user left it: fall back to the
        # user's default tenant instead of locking the session out.
        try:
            return sessions.switch_tenant(session, token, None, address)
        except Unauthenticated as exc:
            raise SignInRequired from exc


def sign_in_url(prefix: str, request: Request) -> str:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return f"{prefix}/login?next={quote(target, safe='')}"


def is_same_origin(request: Request) -> bool:
    """Tell whether a form post comes from a page of this server.

    The session cookie is SameSite=Strict already; this also rejects a post whose
    Origin header names another site.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin.rstrip("/") == f"{request.url.scheme}://{request.url.netloc}"
