"""Callers of the management API and the rules of what they may see and do.

A caller is a user acting in one active tenant. The rules:

- An endpoint or project is visible to members acting in its tenant, to everyone when
  the endpoint is shared with all tenants, and to OrgAdmins.
- Its owner, a TenantAdmin of its tenant and OrgAdmins may change it and its keys.
  While its tenant is disabled, only OrgAdmins may.
- A resource the caller cannot see is reported as not found, never as forbidden, so
  its existence does not leak.
"""

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from berth.db.models import (
    Endpoint,
    Membership,
    Model,
    PlatformKey,
    Tenant,
    User,
    WebSession,
    utcnow,
)
from berth.errors import Forbidden, NotFound, TenantDisabled, Unauthenticated, UserDisabled
from berth.names import name_key
from berth.secrets import hash_key
from berth.service.common import looks_like_id
from berth.states import ModelSharing, Role


@dataclass
class Principal:
    user_id: str
    username: str
    is_org_admin: bool
    # The active tenant; None only for a user who belongs to no tenant.
    tenant_id: str | None
    tenant_name: str
    # Role per tenant ID, for every tenant the user belongs to.
    roles: dict[str, Role] = field(default_factory=dict)
    # Client address of the request, recorded in the audit log.
    source_address: str = ""
    # ID of the platform key that authenticated the request; None for a web session.
    platform_key_id: str | None = None
    # ID of the web session whose cookie authenticated the request; None for a platform key.
    web_session_id: str | None = None
    # Names of the disabled tenants the user belongs to, set only when tenant_id is None.
    disabled_tenant_names: list[str] = field(default_factory=list)

    @property
    def active_tenant_id(self) -> str:
        """The active tenant's ID; raises Forbidden for a user of no tenant."""
        if self.tenant_id is None:
            raise Forbidden(self.no_tenant_message())
        return self.tenant_id

    def no_tenant_message(self) -> str:
        """Explain why the user has no active tenant, and how to get one."""
        names = self.disabled_tenant_names
        if len(names) == 1:
            return (
                f"user '{self.username}' is a member only of tenant '{names[0]}', which is "
                f"disabled; an OrgAdmin can enable it with `berth tenant enable {names[0]}`"
            )
        if names:
            listed = ", ".join(f"'{name}'" for name in names)
            return (
                f"user '{self.username}' is a member only of disabled tenants ({listed}); "
                "an OrgAdmin can enable one with `berth tenant enable NAME`"
            )
        return (
            f"user '{self.username}' is not a member of any tenant; "
            "ask a TenantAdmin or an OrgAdmin to add you to one"
        )

    def is_tenant_admin(self, tenant_id: str) -> bool:
        return self.is_org_admin or self.roles.get(tenant_id) == Role.TENANT_ADMIN

    def can_view_endpoint(self, endpoint: Endpoint) -> bool:
        return (
            self.is_org_admin
            or endpoint.tenant_id == self.tenant_id
            or endpoint.share_with_all_tenants
        )

    def can_manage_endpoint(self, endpoint: Endpoint) -> bool:
        return self._has_manage_role(endpoint) and not self._locked_out_of(endpoint.tenant)

    def require_manage(self, endpoint: Endpoint, action: str) -> None:
        """Raise Forbidden unless the caller may change the endpoint and its keys.

        A disabled tenant's endpoints stay unchanged until an OrgAdmin enables the tenant,
        whichever tenant the caller acts in. Only OrgAdmins may still change them, for
        example to stop them and free their instance slots.
        """
        if not self._has_manage_role(endpoint):
            raise Forbidden(
                f"you may not {action} endpoint '{endpoint.name}': only its owner, a "
                "TenantAdmin of its tenant or an OrgAdmin may",
            )
        tenant = endpoint.tenant
        if self._locked_out_of(tenant):
            raise TenantDisabled(
                f"you may not {action} endpoint '{endpoint.name}': its tenant "
                f"'{tenant.name}' is disabled, so only an OrgAdmin may change it; an OrgAdmin "
                f"can enable the tenant with `berth tenant enable {tenant.name}`",
            )

    def _has_manage_role(self, endpoint: Endpoint) -> bool:
        return endpoint.owner_id == self.user_id or self.is_tenant_admin(endpoint.tenant_id)

    def _locked_out_of(self, tenant: Tenant) -> bool:
        return tenant.disabled and not self.is_org_admin

    def can_view_model(self, model: Model) -> bool:
        if self.is_org_admin or model.is_builtin or model.sharing == ModelSharing.ALL_TENANTS:
            return True
        in_tenant = model.tenant_id == self.tenant_id
        return in_tenant and (
            model.sharing == ModelSharing.TENANT or model.owner_id == self.user_id
        )

    def can_manage_model(self, model: Model) -> bool:
        if model.is_builtin:
            return False
        if model.owner_id == self.user_id or self.is_org_admin:
            return True
        return model.tenant_id is not None and self.is_tenant_admin(model.tenant_id)

    def require_tenant_admin(self, tenant_id: str, action: str) -> None:
        if not self.is_tenant_admin(tenant_id):
            raise Forbidden(f"only a TenantAdmin of the tenant or an OrgAdmin may {action}")

    def require_org_admin(self, action: str) -> None:
        if not self.is_org_admin:
            raise Forbidden(f"only an OrgAdmin may {action}")


def authenticate_key(
    session: Session, key: str | None, tenant_ref: str | None, source_address: str = ""
) -> Principal:
    """Resolve a platform API key and the requested active tenant into a Principal."""
    if not key:
        raise Unauthenticated(
            "missing credentials: send a platform API key as 'Authorization: Bearer <key>' "
            "(the CLI reads BERTH_API_KEY, --api-key or the profile of `berth login`)"
        )
    row = session.scalar(
        select(PlatformKey).where(
            PlatformKey.key_hash == hash_key(key), PlatformKey.revoked_at.is_(None)
        )
    )
    if row is None:
        raise Unauthenticated("invalid platform API key")
    if row.user.disabled:
        # The caller has the user's key, so the user's name and status are no secret.
        raise UserDisabled(
            f"user '{row.user.username}' is disabled, so its platform API keys are "
            f"rejected; an OrgAdmin can enable it with `berth user enable {row.user.username}`"
        )
    principal = principal_for(session, row.user, tenant_ref, source_address)
    principal.platform_key_id = row.id
    return principal


def authenticate_session(
    session: Session, token: str, tenant_ref: str | None, source_address: str = ""
) -> Principal:
    """Resolve a web session cookie; the session's own tenant applies unless one is asked."""
    row = session.scalar(select(WebSession).where(WebSession.token_hash == hash_key(token)))
    if row is None or row.expires_at <= utcnow() or row.user.disabled:
        raise Unauthenticated("your session has ended; sign in again")
    principal = principal_for(session, row.user, tenant_ref or row.tenant_id, source_address)
    principal.web_session_id = row.id
    return principal


# Kept for callers that only have a key: tests and scripts.
authenticate = authenticate_key


def principal_for(
    session: Session, user: User, tenant_ref: str | None, source_address: str = ""
) -> Principal:
    memberships = session.scalars(select(Membership).where(Membership.user_id == user.id)).all()
    roles = {membership.tenant_id: membership.role for membership in memberships}
    tenant = _active_tenant(session, user, roles, tenant_ref)
    disabled_names: list[str] = []
    if tenant is None and roles:
        disabled_names = list(
            session.scalars(
                select(Tenant.name)
                .where(Tenant.id.in_(roles), Tenant.disabled.is_(True))
                .order_by(Tenant.name_key)
            )
        )
    return Principal(
        user_id=user.id,
        username=user.username,
        is_org_admin=user.is_org_admin,
        tenant_id=tenant.id if tenant else None,
        tenant_name=tenant.name if tenant else "",
        roles=roles,
        source_address=source_address,
        disabled_tenant_names=disabled_names,
    )


def _active_tenant(
    session: Session, user: User, roles: dict[str, Role], tenant_ref: str | None
) -> Tenant | None:
    if tenant_ref:
        tenant = find_tenant_row(session, tenant_ref)
        if tenant is None or (tenant.id not in roles and not user.is_org_admin):
            raise NotFound(f"tenant '{tenant_ref}' not found", field="tenant")
        if tenant.disabled and not user.is_org_admin:
            raise TenantDisabled(
                f"tenant '{tenant.name}' is disabled; an OrgAdmin can enable it with "
                f"`berth tenant enable {tenant.name}`"
            )
        return tenant

    candidates = [
        tenant
        for tenant in session.scalars(select(Tenant).where(Tenant.id.in_(roles))).all()
        if not tenant.disabled
    ]
    if not candidates:
        return None
    for tenant in candidates:
        if tenant.id == user.default_tenant_id:
            return tenant
    return min(candidates, key=lambda tenant: (tenant.created_at, tenant.name))


def find_tenant_row(session: Session, ref: str) -> Tenant | None:
    ref = ref.strip()
    if looks_like_id(ref):
        return session.get(Tenant, ref.lower())
    return session.scalar(select(Tenant).where(Tenant.name_key == name_key(ref)))
