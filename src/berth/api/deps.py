"""Dependencies shared by the API routes: the database session and the caller."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from berth.auth import Principal, authenticate_key, authenticate_session
from berth.db.engine import Database
from berth.errors import Forbidden
from berth.service.endpoints import Limits
from berth.settings import Settings


def get_database(request: Request) -> Database:
    return request.app.state.database  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.session() as session:
        yield session


SESSION_COOKIE = "berth_session"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def get_principal(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    authorization: Annotated[str | None, Header()] = None,
    x_berth_tenant: Annotated[str | None, Header()] = None,
) -> Principal:
    """Authenticate by platform key (Authorization: Bearer) or by the web session cookie."""
    address = request.client.host if request.client else ""
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


def commit_and_notify(session: Session, request: Request) -> None:
    """Commit the change, then wake the reconciler and the gateway's sync."""
    session.commit()
    callback = getattr(request.app.state, "on_change", None)
    if callback is not None:
        callback()


SessionDep = Annotated[Session, Depends(get_session)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
LimitsDep = Annotated[Limits, Depends(get_limits)]
