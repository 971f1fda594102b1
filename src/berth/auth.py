"""Who is calling, and what they may see and do.

The rules: an endpoint is visible to every member of its tenant, to every user when it
is shared with all tenants, and to OrgAdmins. Its owner, a TenantAdmin of its tenant
and OrgAdmins may change it and its keys. A resource the caller cannot see is reported
as not found, so its existence does not leak.
"""

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from berth.db.models import Endpoint, Membership, PlatformKey, Tenant, User
from berth.errors import Forbidden, NotFound, Unauthenticated
from berth.names import name_key
from berth.secrets import hash_key
from berth.states import Role


@dataclass
class Principal:
    user_id: str
    username: str
    is_org_admin: bool
    tenant_id: str
    tenant_name: str
    # Role per tenant id, for every tenant the user belongs to.
    roles: dict[str, Role] = field(default_factory=dict)

    def can_view_endpoint(self, endpoint: Endpoint) -> bool:
        return (
            self.is_org_admin or endpoint.tenant_id in self.roles or endpoint.share_with_all_tenants
        )

    def can_manage_endpoint(self, endpoint: Endpoint) -> bool:
        return (
            self.is_org_admin
            or endpoint.owner_id == self.user_id
            or self.roles.get(endpoint.tenant_id) == Role.TENANT_ADMIN
        )

    def require_manage(self, endpoint: Endpoint, action: str) -> None:
        if not self.can_manage_endpoint(endpoint):
            raise Forbidden(
                f"you may not {action} endpoint '{endpoint.name}': only its owner, a "
                "TenantAdmin of its tenant or an OrgAdmin may",
            )


def authenticate(session: Session, key: str | None, tenant_ref: str | None) -> Principal:
    """Resolve a platform key and the requested active tenant into a Principal."""
    if not key:
        raise Unauthenticated(
            "missing platform API key: send it as 'Authorization: Bearer <key>' "
            "(the CLI reads BERTH_API_KEY or --api-key)"
        )
    row = session.scalar(
        select(PlatformKey).where(
            PlatformKey.key_hash == hash_key(key), PlatformKey.revoked_at.is_(None)
        )
    )
    if row is None or row.user.disabled:
        raise Unauthenticated("invalid platform API key")
    user: User = row.user

    memberships = session.scalars(select(Membership).where(Membership.user_id == user.id)).all()
    roles = {membership.tenant_id: membership.role for membership in memberships}
    tenant = _active_tenant(session, user, roles, tenant_ref)
    return Principal(
        user_id=user.id,
        username=user.username,
        is_org_admin=user.is_org_admin,
        tenant_id=tenant.id,
        tenant_name=tenant.name,
        roles=roles,
    )


def _active_tenant(
    session: Session, user: User, roles: dict[str, Role], tenant_ref: str | None
) -> Tenant:
    if tenant_ref:
        tenant = session.scalar(
            select(Tenant).where(
                (Tenant.id == tenant_ref) | (Tenant.name_key == name_key(tenant_ref))
            )
        )
        if tenant is None or (tenant.id not in roles and not user.is_org_admin):
            raise NotFound(f"tenant '{tenant_ref}' not found", field="tenant")
        return tenant

    if not roles:
        raise Forbidden(f"user '{user.username}' is not a member of any tenant")
    tenants = session.scalars(select(Tenant).where(Tenant.id.in_(roles))).all()
    return min(tenants, key=lambda tenant: tenant.created_at)
