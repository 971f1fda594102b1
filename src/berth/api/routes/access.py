"""Sign-in for the web UI, and organization-wide settings."""

from fastapi import APIRouter, Request, Response

from berth.api.convert import whoami_out
from berth.api.deps import SESSION_COOKIE, PrincipalDep, SessionDep, apply_change
from berth.api.schemas import (
    OrganizationOut,
    OrganizationUpdate,
    Reference,
    SharingChange,
    SignIn,
    WhoAmI,
)
from berth.api.strict_json import StrictJSONRoute
from berth.auth import Principal
from berth.db.transactions import run_transaction
from berth.service import organization, sessions
from berth.service.sessions import SESSION_LIFETIME

router = APIRouter(tags=["access"], route_class=StrictJSONRoute)


@router.post("/auth/login", response_model=WhoAmI)
def sign_in(body: SignIn, request: Request, response: Response, session: SessionDep) -> WhoAmI:
    """Check user name and password and set the session cookie used by the web UI."""
    address = request.client.host if request.client else ""
    limiter: sessions.LoginLimiter = request.app.state.login_limiter

    # A re-run after a transient database failure is safe for the limiter, because only a
    # wrong password counts and such a sign-in raises before anything is written.
    def sign_in() -> tuple[str, Principal]:
        token, principal = sessions.sign_in(session, limiter, body.username, body.password, address)
        if body.tenant:
            # Stored on the session, so later requests with the cookie act in this tenant.
            principal = sessions.switch_tenant(session, token, body.tenant, address)
        return token, principal

    token, principal = run_transaction(session, sign_in, "sign-in")
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return whoami_out(principal)


@router.post("/auth/logout", status_code=204)
def sign_out(request: Request, response: Response, session: SessionDep) -> Response:
    """End the web session of this browser."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        run_transaction(session, lambda: sessions.sign_out(session, token), "sign-out")
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/organization", response_model=OrganizationOut)
def get_organization(session: SessionDep, principal: PrincipalDep) -> OrganizationOut:
    """Show organization-wide settings."""
    settings = organization.get_settings(session)
    return OrganizationOut(share_with_all_tenants=settings.share_with_all_tenants)


@router.patch("/organization", response_model=SharingChange)
def update_organization(
    body: OrganizationUpdate, request: Request, session: SessionDep, principal: PrincipalDep
) -> SharingChange:
    """Turn sharing with all tenants on or off (OrgAdmin only).

    Turning it off leaves shared endpoints and models shared unless `unshare_existing`
    is set; the response lists them either way."""
    report = apply_change(
        session,
        request,
        lambda: organization.set_sharing(
            session, principal, body.share_with_all_tenants, body.unshare_existing
        ),
    )
    count = len(report.endpoints) + len(report.models)
    if report.share_with_all_tenants:
        message = "sharing with all tenants is on"
    elif report.unshared:
        message = f"sharing with all tenants is off; {count} shared resources were unshared"
    elif count:
        message = (
            f"sharing with all tenants is off; {count} resources stay shared with all tenants "
            "until their owners change them (or send unshare_existing=true)"
        )
    else:
        message = "sharing with all tenants is off; nothing was shared"
    return SharingChange(
        share_with_all_tenants=report.share_with_all_tenants,
        message=message,
        endpoints_shared=[Reference(id=row.id, name=row.name) for row in report.endpoints],
        models_shared=[Reference(id=row.id, name=row.name) for row in report.models],
        unshared=report.unshared,
    )
