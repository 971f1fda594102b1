"""Users and their platform API keys. `me` names the caller wherever a user is named."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from berth.api.convert import platform_key_out, user_out
from berth.api.deps import PrincipalDep, SessionDep, apply_change
from berth.api.schemas import (
    Page,
    PlatformKeyCreate,
    PlatformKeyCreated,
    PlatformKeyOut,
    PlatformKeyRevoked,
    UserCreate,
    UserCreated,
    UserOut,
    UserUpdate,
)
from berth.api.strict_json import StrictJSONRoute
from berth.db.models import PlatformKey, User
from berth.service import tenants
from berth.service import users as service
from berth.service.common import MAX_OFFSET, MAX_PAGE_SIZE

router = APIRouter(prefix="/users", tags=["users"], route_class=StrictJSONRoute)


# Listed as a route dependency so that a change to an unknown user gets 404 before an
# invalid body gets 422, because FastAPI (0.165) runs dependencies before it validates
# the body.
def _require_user(user: str, session: SessionDep, principal: PrincipalDep) -> None:
    service.find_user(session, principal, user)


@router.get("", response_model=Page[UserOut])
def list_users(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[UserOut]:
    """List users: all of them for an OrgAdmin, the active tenant's members for others."""
    rows, total = service.list_users(session, principal, limit, offset)
    return Page(
        items=[user_out(row, principal) for row in rows], total=total, limit=limit, offset=offset
    )


@router.post("", response_model=UserCreated, status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserCreate, request: Request, session: SessionDep, principal: PrincipalDep
) -> UserCreated:
    """Create a user (OrgAdmin only), optionally with a tenant role and a platform key."""
    new = service.NewUser(
        username=body.username,
        password=body.password,
        is_org_admin=body.is_org_admin,
        create_key=body.create_key,
    )

    def create() -> tuple[User, str | None]:
        tenant = tenants.find_tenant(session, principal, body.tenant) if body.tenant else None
        user, key = service.create_user(session, principal, new)
        if tenant is not None:
            tenants.set_membership(session, principal, tenant, user, body.role)
        return user, key

    user, key = apply_change(session, request, create)
    session.refresh(user)
    return UserCreated(**user_out(user, principal).model_dump(), api_key=key)


@router.get("/{user}", response_model=UserOut)
def get_user(user: str, session: SessionDep, principal: PrincipalDep) -> UserOut:
    """Show one user, named by name, ID or `me`."""
    return user_out(service.find_user(session, principal, user), principal)


@router.patch("/{user}", response_model=UserOut, dependencies=[Depends(_require_user)])
def update_user(
    user: str, body: UserUpdate, request: Request, session: SessionDep, principal: PrincipalDep
) -> UserOut:
    """Rename, disable or promote a user (OrgAdmin), or set a password or default tenant
    (the user or an OrgAdmin).

    Disabling a user or setting their password ends their web sessions. Users who set
    their own password with a session cookie stay signed in with that session."""

    def update() -> User:
        row = service.find_user(session, principal, user)
        default_tenant = (
            tenants.find_tenant(session, principal, body.default_tenant)
            if body.default_tenant
            else None
        )
        service.update_user(
            session,
            principal,
            row,
            username=body.username,
            disabled=body.disabled,
            is_org_admin=body.is_org_admin,
            password=body.password,
            default_tenant=default_tenant,
        )
        return row

    return user_out(apply_change(session, request, update), principal)


@router.get("/{user}/keys", response_model=list[PlatformKeyOut])
def list_keys(user: str, session: SessionDep, principal: PrincipalDep) -> list[PlatformKeyOut]:
    """List a user's platform API keys (the keys themselves are never shown again)."""
    row = service.find_user(session, principal, user)
    return [platform_key_out(key) for key in service.list_platform_keys(session, principal, row)]


@router.post(
    "/{user}/keys",
    response_model=PlatformKeyCreated,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(_require_user)],
)
def create_key(
    user: str,
    body: PlatformKeyCreate,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
) -> PlatformKeyCreated:
    """Create a platform API key; the response is the only time the key is shown."""

    def create() -> tuple[PlatformKey, str]:
        row = service.find_user(session, principal, user)
        return service.create_platform_key(session, principal, row, body.description)

    key_row, key = apply_change(session, request, create)
    return PlatformKeyCreated(**platform_key_out(key_row).model_dump(), key=key)


@router.post("/{user}/keys/{key}/revoke", response_model=PlatformKeyRevoked)
def revoke_key(
    user: str, key: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> PlatformKeyRevoked:
    """Revoke a platform API key for good.

    Revoking a revoked key changes nothing and succeeds, with `already_revoked` true."""

    def revoke() -> tuple[PlatformKey, bool]:
        row = service.find_user(session, principal, user)
        key_row = service.find_platform_key(session, principal, row, key, "revoke")
        already_revoked = key_row.revoked_at is not None
        return service.revoke_platform_key(session, principal, row, key_row.id), already_revoked

    key_row, already_revoked = apply_change(session, request, revoke)
    return PlatformKeyRevoked(
        **platform_key_out(key_row).model_dump(), already_revoked=already_revoked
    )
