"""Tenants and memberships."""

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from berth.auth import Principal, find_tenant_row
from berth.db.models import Endpoint, Membership, Project, Tenant, User
from berth.errors import Conflict, InvalidInput, NotFound
from berth.names import name_key, normalize_name
from berth.service import audit
from berth.service.common import mark_changed, new_id
from berth.service.projects import DEFAULT_PROJECT
from berth.states import Role


def find_tenant(session: Session, principal: Principal, ref: str) -> Tenant:
    """Find a tenant the caller belongs to (any tenant for an OrgAdmin)."""
    tenant = find_tenant_row(session, ref)
    if tenant is None or (not principal.is_org_admin and tenant.id not in principal.roles):
        raise NotFound(f"tenant '{ref}' not found", field="tenant")
    return tenant


def list_tenants(
    session: Session, principal: Principal, limit: int, offset: int
) -> tuple[list[Tenant], int]:
    query = select(Tenant)
    if not principal.is_org_admin:
        query = query.where(Tenant.id.in_(list(principal.roles)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Tenant.created_at, Tenant.id).limit(limit).offset(offset))
    return list(rows), total


def _check_unique(session: Session, name: str, excluding: str | None = None) -> None:
    query = select(Tenant.id).where(Tenant.name_key == name_key(name))
    if excluding:
        query = query.where(Tenant.id != excluding)
    if session.scalar(query) is not None:
        raise Conflict(f"a tenant named '{name}' already exists", field="name")


def create_tenant(session: Session, principal: Principal, name: str) -> Tenant:
    """Create a tenant with its `default` project; the creator becomes its TenantAdmin."""
    principal.require_org_admin("create tenants")
    name = normalize_name(name, field="name")
    _check_unique(session, name)
    tenant = Tenant(id=new_id(), name=name, name_key=name_key(name))
    session.add(tenant)
    session.flush()
    session.add(Membership(user_id=principal.user_id, tenant_id=tenant.id, role=Role.TENANT_ADMIN))
    session.add(
        Project(
            id=new_id(),
            tenant_id=tenant.id,
            name=DEFAULT_PROJECT,
            name_key=DEFAULT_PROJECT,
            owner_id=principal.user_id,
            description="created with the tenant",
        )
    )
    audit.record(session, principal, "tenant.created", "tenant", tenant.id, name, tenant.id)
    return tenant


def update_tenant(
    session: Session,
    principal: Principal,
    tenant: Tenant,
    name: str | None,
    disabled: bool | None,
) -> Tenant:
    principal.require_org_admin("rename, disable or enable tenants")
    if name is not None:
        name = normalize_name(name, field="name")
        _check_unique(session, name, excluding=tenant.id)
        if name != tenant.name:
            audit.record(
                session,
                principal,
                "tenant.renamed",
                "tenant",
                tenant.id,
                name,
                tenant.id,
                old_name=tenant.name,
            )
            tenant.name = name
            tenant.name_key = name_key(name)
            _notify_gateways(session, tenant)
    if disabled is not None and disabled != tenant.disabled:
        tenant.disabled = disabled
        action = "tenant.disabled" if disabled else "tenant.enabled"
        audit.record(session, principal, action, "tenant", tenant.id, tenant.name, tenant.id)
        _notify_gateways(session, tenant)
    return tenant


def _notify_gateways(session: Session, tenant: Tenant) -> None:
    """Give the tenant's endpoints a new change number, so that every gateway reloads
    them with the tenant's name and status at its next refresh.

    While a tenant is disabled, gateways reject requests to its endpoints, and the
    rejection names the tenant.
    """
    endpoints = session.scalars(
        select(Endpoint).where(Endpoint.tenant_id == tenant.id, Endpoint.deleted_at.is_(None))
    ).all()
    if endpoints:
        mark_changed(session, *endpoints)


def list_members(
    session: Session, principal: Principal, tenant: Tenant
) -> list[tuple[Membership, User]]:
    rows = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.tenant_id == tenant.id)
        .order_by(User.username_key)
    ).all()
    return [(membership, user) for membership, user in rows]


def set_membership(
    session: Session, principal: Principal, tenant: Tenant, user: User, role: Role
) -> Membership:
    """Add a user to a tenant or change their role there."""
    principal.require_tenant_admin(tenant.id, "change members of a tenant")
    membership = session.get(Membership, (user.id, tenant.id))
    if membership is None:
        membership = Membership(user_id=user.id, tenant_id=tenant.id, role=role)
        session.add(membership)
        action, details = "membership.added", {"role": role.value}
    elif membership.role != role:
        details = {"role": role.value, "old_role": membership.role.value}
        membership.role = role
        action = "membership.changed"
    else:
        return membership
    audit.record(session, principal, action, "user", user.id, user.username, tenant.id, **details)
    return membership


def remove_membership(session: Session, principal: Principal, tenant: Tenant, user: User) -> None:
    principal.require_tenant_admin(tenant.id, "change members of a tenant")
    membership = session.get(Membership, (user.id, tenant.id))
    if membership is None:
        raise NotFound(
            f"user '{user.username}' is not a member of tenant '{tenant.name}'", field="user"
        )
    admins = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.tenant_id == tenant.id, Membership.role == Role.TENANT_ADMIN)
    )
    if membership.role == Role.TENANT_ADMIN and admins == 1 and not principal.is_org_admin:
        raise InvalidInput(
            f"'{user.username}' is the last TenantAdmin of tenant '{tenant.name}'; "
            "make another member TenantAdmin first",
            field="user",
        )
    session.delete(membership)
    audit.record(
        session, principal, "membership.removed", "user", user.id, user.username, tenant.id
    )
