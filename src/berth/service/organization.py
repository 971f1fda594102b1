"""Organization-wide settings: sharing with all tenants."""

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from berth.auth import Principal
from berth.db.models import Endpoint, Model, OrganizationSettings
from berth.service import audit
from berth.service.common import mark_changed
from berth.states import ModelSharing


@dataclass
class SharingReport:
    share_with_all_tenants: bool
    # Resources shared with all tenants when sharing was turned off, and whether they
    # were unshared (on request) or left shared.
    endpoints: list[Endpoint] = field(default_factory=list)
    models: list[Model] = field(default_factory=list)
    unshared: bool = False


def get_settings(session: Session) -> OrganizationSettings:
    settings = session.get(OrganizationSettings, 1)
    if settings is None:
        settings = OrganizationSettings(id=1, share_with_all_tenants=False)
        session.add(settings)
    return settings


def set_sharing(
    session: Session, principal: Principal, enabled: bool, unshare_existing: bool = False
) -> SharingReport:
    """Turn sharing with all tenants on or off.

    Turning it off never unshares anything silently: the report lists what stays shared,
    and `unshare_existing` moves those endpoints and models back to their own tenant.
    """
    principal.require_org_admin("change organization settings")
    settings = get_settings(session)
    if settings.share_with_all_tenants != enabled:
        settings.share_with_all_tenants = enabled
        audit.record(
            session,
            principal,
            "organization.sharing_changed",
            "organization",
            "",
            "",
            share_with_all_tenants=enabled,
        )
    report = SharingReport(share_with_all_tenants=enabled)
    if enabled:
        return report

    report.endpoints = list(
        session.scalars(
            select(Endpoint).where(
                Endpoint.share_with_all_tenants.is_(True), Endpoint.deleted_at.is_(None)
            )
        )
    )
    report.models = list(
        session.scalars(
            select(Model).where(
                Model.sharing == ModelSharing.ALL_TENANTS,
                Model.is_builtin.is_(False),
                Model.deleted_at.is_(None),
            )
        )
    )
    if unshare_existing:
        for endpoint in report.endpoints:
            endpoint.share_with_all_tenants = False
            endpoint.version += 1
            mark_changed(session, endpoint)
        for model in report.models:
            model.sharing = ModelSharing.TENANT
        report.unshared = True
        audit.record(
            session,
            principal,
            "organization.unshared_all",
            "organization",
            "",
            "",
            endpoints=len(report.endpoints),
            models=len(report.models),
        )
    return report
