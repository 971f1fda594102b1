"""Dependencies shared by the API routes: the database session and the caller."""

from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from berth.auth import Principal, authenticate_key, authenticate_session
from berth.db.engine import Database
from berth.db.transactions import run_transaction
from berth.errors import Forbidden
from berth.service.common import looks_like_id
from berth.service.endpoints import Limits
from berth.settings import Settings

T = TypeVar("T")


def get_database(request: Request) -> Database:
    return request.app.state.database  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.session() as session:
        yield session


SESSION_COOKIE = "berth_session"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


# Declares the platform key in the OpenAPI schema, so the API reference offers
# "Authorize" and adds the header to its curl commands. With auto_error=False a missing
# or non-Bearer header is left to get_principal, which also accepts the session cookie.
PLATFORM_KEY = HTTPBearer(
    auto_error=False,
    scheme_name="platformKey",
    description=(
        "A platform key, sent as `Authorization: Bearer <key>`. "
        "A signed-in web UI session works too, through its cookie."
    ),
)


def get_principal(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(PLATFORM_KEY)],
    x_berth_tenant: Annotated[str | None, Header()] = None,
) -> Principal:
    """Authenticate by platform key (Authorization: Bearer) or by the web session cookie."""
    address = request.client.host if request.client else ""
    # HTTPBearer returns None for another scheme, so the raw header is read here, and
    # such a header is rejected instead of falling back to the cookie.
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        key = value.strip() if scheme.lower() == "bearer" else None
        return authenticate_key(session, key, x_berth_tenant, address)

    token = request.cookies.get(SESSION_COOKIE)
    if token:
        _check_same_origin(request)
        return authenticate_session(session, token, x_berth_tenant, address)
    return authenticate_key(session, None, x_berth_tenant, address)


def _check_same_origin(request: Request) -> None:
    # The cookie is SameSite=Strict; this also refuses a changing request that a page of
    # another origin sends with it.
    origin = request.headers.get("origin")
    if request.method in _SAFE_METHODS or origin is None:
        return
    expected = f"{request.url.scheme}://{request.url.netloc}"
    if origin.rstrip("/") != expected:
        raise Forbidden(f"requests from origin {origin} may not use the session cookie")


def get_limits(settings: Annotated[Settings, Depends(get_settings)]) -> Limits:
    return Limits(
        capacity=settings.capacity, max_instances_per_endpoint=settings.max_instances_per_endpoint
    )


def apply_change(session: Session, request: Request, work: Callable[[], T]) -> T:
    """Run `work` and commit it, then wake the reconciler and the gateway's sync.

    After a deadlock, a serialization failure or a locked SQLite database, `work` runs
    again in a new transaction (see run_transaction), so it must change nothing outside
    the database and must look up again every row that it uses.
    """
    result = run_transaction(session, work, describe_request(request))
    notify_change(request)
    return result


# Path parameters whose value can be a secret, because the key routes also accept the
# key itself in place of its ID.
_SECRET_PATH_PARAMETERS = frozenset({"key"})


def describe_request(request: Request) -> str:
    """Name a request for the log by its method, route and path parameters.

    A `key` parameter that is not an ID shows as "(hidden)", so the name never contains a key.
    """
    route = getattr(request.scope.get("route"), "path", "")
    parameters = []
    for name, value in request.path_params.items():
        logged = value
        if name in _SECRET_PATH_PARAMETERS and not looks_like_id(str(value)):
            logged = "(hidden)"
        parameters.append(f"{name}={logged}")
    text = f"{request.method} {request.scope.get('root_path', '')}{route}"
    if parameters:
        text += f" ({', '.join(parameters)})"
    return text


def notify_change(request: Request) -> None:
    """Wake the reconciler and the gateway's sync after a committed change."""
    callback = getattr(request.app.state, "on_change", None)
    if callback is not None:
        callback()


SessionDep = Annotated[Session, Depends(get_session)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
LimitsDep = Annotated[Limits, Depends(get_limits)]
