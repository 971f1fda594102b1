"""Tenants and their members."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from berth.api.convert import membership_out, tenant_out
from berth.api.deps import PrincipalDep, SessionDep, apply_change
from berth.api.schemas import (
    MembershipOut,
    MembershipSet,
    Page,
    TenantCreate,
    TenantOut,
    TenantUpdate,
)
from berth.api.strict_json import StrictJSONRoute
from berth.db.models import Membership, Tenant
from berth.service import tenants as service
from berth.service.common import MAX_OFFSET, MAX_PAGE_SIZE
from berth.service.users import find_user_for_membership
from berth.states import Role

router = APIRouter(prefix="/tenants", tags=["tenants"], route_class=StrictJSONRoute)


# Listed as route dependencies so that a change to an unknown tenant or user gets 404
# before an invalid body gets 422, because FastAPI (0.165) runs dependencies before it
# validates the body.
def _require_tenant(tenant: str, session: SessionDep, principal: PrincipalDep) -> None:
    service.find_tenant(session, principal, tenant)


def _require_member(tenant: str, user: str, session: SessionDep, principal: PrincipalDep) -> None:
    row = service.find_tenant(session, principal, tenant)
    # This also raises 403 before the body check for a caller who may not change members.
    find_user_for_membership(session, principal, row, user)


@router.get("", response_model=Page[TenantOut])
def list_tenants(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[TenantOut]:
    """List the caller's tenants (every tenant for an OrgAdmin)."""
    rows, total = service.list_tenants(session, principal, limit, offset)
    items = [tenant_out(row, principal) for row in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.post("", response_model=TenantOut, status_code=status.HTTP_201_CREATED)
def create_tenant(
    body: TenantCreate, request: Request, session: SessionDep, principal: PrincipalDep
) -> TenantOut:
    """Create a tenant with a `default` project (OrgAdmin only)."""
    tenant = apply_change(
        session, request, lambda: service.create_tenant(session, principal, body.name)
    )
    # The creator became the tenant's TenantAdmin after `principal` was resolved.
    return tenant_out(tenant, principal).model_copy(update={"role": Role.TENANT_ADMIN})


@router.get("/{tenant}", response_model=TenantOut)
def get_tenant(tenant: str, session: SessionDep, principal: PrincipalDep) -> TenantOut:
    """Show one tenant, named by name or ID."""
    return tenant_out(service.find_tenant(session, principal, tenant), principal)


@router.patch("/{tenant}", response_model=TenantOut, dependencies=[Depends(_require_tenant)])
def update_tenant(
    tenant: str,
    body: TenantUpdate,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
) -> TenantOut:
    """Rename, disable or enable a tenant (OrgAdmin only)."""

    def update() -> Tenant:
        row = service.find_tenant(session, principal, tenant)
        service.update_tenant(session, principal, row, body.name, body.disabled)
        return row

    return tenant_out(apply_change(session, request, update), principal)


@router.get("/{tenant}/members", response_model=list[MembershipOut])
def list_members(tenant: str, session: SessionDep, principal: PrincipalDep) -> list[MembershipOut]:
    """List the members of a tenant and their roles."""
    row = service.find_tenant(session, principal, tenant)
    members = service.list_members(session, principal, row)
    return [membership_out(membership) for membership, _user in members]


@router.put(
    "/{tenant}/members/{user}",
    response_model=MembershipOut,
    dependencies=[Depends(_require_member)],
)
def set_member(
    tenant: str,
    user: str,
    body: MembershipSet,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
) -> MembershipOut:
    """Add a user to the tenant or change their role (TenantAdmin or OrgAdmin)."""

    def set_role() -> Membership:
        row = service.find_tenant(session, principal, tenant)
        member = find_user_for_membership(session, principal, row, user)
        return service.set_membership(session, principal, row, member, body.role)

    return membership_out(apply_change(session, request, set_role))


@router.delete("/{tenant}/members/{user}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(
    tenant: str, user: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> None:
    """Remove a user from the tenant (TenantAdmin or OrgAdmin)."""

    def remove() -> None:
        row = service.find_tenant(session, principal, tenant)
        member = find_user_for_membership(session, principal, row, user)
        service.remove_membership(session, principal, row, member)

    apply_change(session, request, remove)
