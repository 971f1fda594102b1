"""The audit log: one entry per management action, with no secret in it.

OrgAdmins read every entry; TenantAdmins read the entries of their active tenant; other
users read their own entries in their active tenant.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from berth.auth import Principal
from berth.db.models import AuditEntry
from berth.service.common import new_id


def record(
    session: Session,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: str,
    resource_name: str = "",
    tenant_id: str | None = None,
    **details: Any,
) -> None:
    """Add an entry to the caller's transaction, so it commits with the change itself."""
    session.add(
        AuditEntry(
            id=new_id(),
            actor_id=principal.user_id,
            actor_name=principal.username,
            tenant_id=tenant_id,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            resource_name=resource_name,
            source_address=principal.source_address,
            details=details,
        )
    )


def record_without_actor(
    session: Session,
    action: str,
    resource_type: str,
    resource_id: str,
    resource_name: str = "",
    **details: Any,
) -> None:
    """Add an organization-wide entry for a change that no signed-in user made, such as
    one made on the server machine with `berth admin`. `details` records how it was made."""
    session.add(
        AuditEntry(
            id=new_id(),
            actor_id=None,
            actor_name="",
            tenant_id=None,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            resource_name=resource_name,
            source_address="",
            details=details,
        )
    )


@dataclass
class AuditFilter:
    action: str | None = None
    actor: str | None = None
    resource_id: str | None = None
    resource_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # OrgAdmins only: entries of this tenant instead of the active one; "all" for every tenant.
    tenant: str | None = None


def list_entries(
    session: Session, principal: Principal, filters: AuditFilter, limit: int, offset: int
) -> tuple[list[AuditEntry], int]:
    conditions = _visibility(principal, filters.tenant)
    if filters.action:
        conditions.append(AuditEntry.action.startswith(filters.action))
    if filters.actor:
        conditions.append(func.lower(AuditEntry.actor_name) == filters.actor.strip().lower())
    if filters.resource_id:
        conditions.append(AuditEntry.resource_id == filters.resource_id)
    if filters.resource_type:
        conditions.append(AuditEntry.resource_type == filters.resource_type)
    if filters.since:
        conditions.append(AuditEntry.created_at >= filters.since)
    if filters.until:
        conditions.append(AuditEntry.created_at < filters.until)

    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions)) or 0
    rows = session.scalars(
        select(AuditEntry)
        .where(*conditions)
        .order_by(AuditEntry.created_at.desc(), AuditEntry.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


def _visibility(principal: Principal, tenant: str | None) -> list[ColumnElement[bool]]:
    if principal.is_org_admin:
        if tenant == "all":
            return []
        if tenant:
            return [AuditEntry.tenant_id == tenant]
        return [(AuditEntry.tenant_id == principal.tenant_id) | AuditEntry.tenant_id.is_(None)]
    tenant_id = principal.active_tenant_id
    if principal.is_tenant_admin(tenant_id):
        return [AuditEntry.tenant_id == tenant_id]
    return [AuditEntry.tenant_id == tenant_id, AuditEntry.actor_id == principal.user_id]
