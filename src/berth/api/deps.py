"""Dependencies shared by the API routes: the database session and the caller."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from berth.auth import Principal, authenticate
from berth.db.engine import Database
from berth.service.endpoints import Limits
from berth.settings import Settings


def get_database(request: Request) -> Database:
    return request.app.state.database  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.session() as session:
        yield session


def get_principal(
    session: Annotated[Session, Depends(get_session)],
    authorization: Annotated[str | None, Header()] = None,
    x_berth_tenant: Annotated[str | None, Header()] = None,
) -> Principal:
    key = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            key = value.strip()
    return authenticate(session, key, x_berth_tenant)


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
