"""The audit log of management actions."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from berth.api.convert import audit_out
from berth.api.deps import PrincipalDep, SessionDep
from berth.api.schemas import AuditEntryOut, Page
from berth.api.strict_json import StrictJSONRoute
from berth.service import audit as service
from berth.service.common import MAX_OFFSET, MAX_PAGE_SIZE
from berth.service.tenants import find_tenant

router = APIRouter(prefix="/audit", tags=["audit"], route_class=StrictJSONRoute)


@router.get("", response_model=Page[AuditEntryOut])
def list_audit(
    session: SessionDep,
    principal: PrincipalDep,
    action: Annotated[str | None, Query(description="action or its prefix, e.g. 'key.'")] = None,
    actor: Annotated[str | None, Query(description="user name of who acted")] = None,
    resource_id: str | None = None,
    resource_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    tenant: Annotated[
        str | None, Query(description="OrgAdmins: a tenant name or ID, or 'all'")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[AuditEntryOut]:
    """List audit entries, newest first. OrgAdmins see every tenant's, TenantAdmins their
    active tenant's, other users their own."""
    tenant_id = None
    if tenant and principal.is_org_admin:
        tenant_id = "all" if tenant == "all" else find_tenant(session, principal, tenant).id
    filters = service.AuditFilter(
        action=action,
        actor=actor,
        resource_id=resource_id,
        resource_type=resource_type,
        since=_as_utc(since),
        until=_as_utc(until),
        tenant=tenant_id,
    )
    rows, total = service.list_entries(session, principal, filters, limit, offset)
    return Page(items=[audit_out(row) for row in rows], total=total, limit=limit, offset=offset)


def _as_utc(moment: datetime | None) -> datetime | None:
    """Read a time without a zone as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
