"""Pages and the page fragments that the browser polls or loads into dialogs."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from berth.api.convert import key_out, project_out
from berth.api.schemas import ProjectOut
from berth.auth import Principal
from berth.db.models import Project
from berth.db.transactions import run_transaction
from berth.errors import InvalidInput
from berth.runtime.config import DEFAULT_MAX_COMPLETION_TOKENS
from berth.service import endpoints, keys, models, organization, projects, sessions, tenants
from berth.service.common import MAX_PAGE_SIZE
from berth.settings import Settings
from berth.states import EndpointState, KeyStatus, MLApp
from berth.ui.access import (
    SignInRequired,
    client_address,
    current_principal,
    is_same_origin,
    session_token,
)
from berth.ui.display import (
    endpoint_view,
    mask_key,
    model_picker_groups,
    poll_interval_ms,
)
from berth.ui.setting_fields import SETTING_FIELDS

PageHandler = Callable[[Request, Session, Principal], Response]


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def signed_in(handler: PageHandler) -> Callable[[Request], Response]:
    """Run a page handler with a database session and the signed-in user.

    A user who belongs to no tenant is shown a page that explains this instead.
    """

    def endpoint(request: Request) -> Response:
        with request.app.state.database.session() as session:
            principal = current_principal(request, session)
            if principal.tenant_id is None:
                context = chrome(session, principal, section="")
                return render(request, "no_tenant.html", context, status_code=403)
            return handler(request, session, principal)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def chrome(session: Session, principal: Principal, section: str) -> dict[str, Any]:
    """Return the context that the frame of every page needs: user, tenants and menu."""
    rows, _total = tenants.list_tenants(session, principal, MAX_PAGE_SIZE, 0)
    switchable = [row for row in rows if principal.is_org_admin or not row.disabled]
    return {"principal": principal, "tenants": switchable, "section": section}


def _dialog_context(request: Request, session: Session, principal: Principal) -> dict[str, Any]:
    """Collect the choices that the add-endpoint, update and Model Hub dialogs offer."""
    settings = _settings(request)
    return {
        "picker_groups": model_picker_groups(session, principal),
        "facets": models.model_facets(session, principal),
        "org_sharing": organization.get_settings(session).share_with_all_tenants,
        "max_instances": min(settings.max_instances_per_endpoint, settings.capacity),
        "ml_apps": list(MLApp),
        "setting_fields": SETTING_FIELDS,
    }


# Sign-in and the active tenant.


def login_page(request: Request) -> Response:
    """Show the sign-in form, or go straight on for a browser that is signed in."""
    with request.app.state.database.session() as session:
        try:
            current_principal(request, session)
        except SignInRequired:
            return render(request, "login.html", {})
    return RedirectResponse(request.app.state.prefix + "/", status_code=303)


async def switch_tenant(request: Request) -> Response:
    """Make the chosen tenant the active tenant of this browser's session."""
    if not is_same_origin(request):
        return Response("cross-site form posts are rejected", status_code=403)
    form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
    tenant = (form.get("tenant") or [""])[0]
    if not tenant:
        raise InvalidInput("choose a tenant", field="tenant")
    token = session_token(request)

    def switch() -> None:
        with request.app.state.database.session() as session:
            run_transaction(
                session,
                lambda: sessions.switch_tenant(session, token, tenant, client_address(request)),
                "tenant switch",
            )

    await run_in_threadpool(switch)
    # Pages of the old tenant's projects and endpoints may not exist in the new one.
    return RedirectResponse(request.app.state.prefix + "/", status_code=303)


# Dashboard.


@signed_in
def dashboard(request: Request, session: Session, principal: Principal) -> Response:
    context = chrome(session, principal, section="dashboard")
    context.update(_live_endpoints(request, session, principal))
    return render(request, "dashboard.html", context)


@signed_in
def live_endpoints_fragment(request: Request, session: Session, principal: Principal) -> Response:
    return render(request, "_live_endpoints.html", _live_endpoints(request, session, principal))


def _live_endpoints(request: Request, session: Session, principal: Principal) -> dict[str, Any]:
    server_url = _settings(request).advertised_url
    live_rows, live_total = endpoints.list_endpoints(
        session, principal, None, EndpointState.LIVE, MAX_PAGE_SIZE, 0
    )
    rows, total = endpoints.list_endpoints(session, principal, None, None, MAX_PAGE_SIZE, 0)
    return {
        "principal": principal,
        "live": [endpoint_view(row, principal, server_url) for row in live_rows],
        "live_total": live_total,
        "not_live": total - live_total,
        # Refresh often while an endpoint may be about to turn Live or stop being Live.
        "poll_ms": poll_interval_ms([endpoint_view(row, principal, server_url) for row in rows]),
    }


# Projects.


@signed_in
def project_list(request: Request, session: Session, principal: Principal) -> Response:
    rows, total = projects.list_projects(session, principal, MAX_PAGE_SIZE, 0)
    counts: dict[str, int] = {}
    endpoint_rows, _total = endpoints.list_endpoints(
        session, principal, None, None, MAX_PAGE_SIZE, 0
    )
    for endpoint in endpoint_rows:
        counts[endpoint.project_id] = counts.get(endpoint.project_id, 0) + 1
    views = [_project_view(session, principal, row) for row in rows]
    context = chrome(session, principal, section="projects")
    context.update(
        projects=views,
        total=total,
        endpoint_counts=counts,
        can_edit_projects=any(view.can_manage for view in views),
        can_delete_projects=any(view.can_delete for view in views),
    )
    return render(request, "projects.html", context)


@dataclass
class ProjectView:
    """A project as the projects list and the project window show it, with what the
    viewer may do to it."""

    out: ProjectOut
    can_manage: bool
    is_default: bool
    # The fields that the edit and delete dialogs show and send back to the API.
    dialog_data: dict[str, Any]

    @property
    def can_delete(self) -> bool:
        # The default project takes new endpoints that name no project, so it stays.
        return self.can_manage and not self.is_default


def _project_view(session: Session, principal: Principal, project: Project) -> ProjectView:
    out = project_out(project)
    can_manage = projects.can_manage(principal, project)
    is_default = projects.is_default_project(project)
    dialog_data: dict[str, Any] = {
        "id": out.id,
        "name": out.name,
        "description": out.description,
        "version": out.version,
        "is_default": is_default,
    }
    if can_manage and not is_default:
        # The endpoints that keep the project from being deleted, as the API counts them.
        dialog_data["blocking_endpoints"] = projects.count_endpoints(session, project)
    return ProjectView(
        out=out, can_manage=can_manage, is_default=is_default, dialog_data=dialog_data
    )


@signed_in
def project_page(request: Request, session: Session, principal: Principal) -> Response:
    project = projects.find_project(session, principal, request.path_params["project"])
    context = chrome(session, principal, section="projects")
    context.update(_dialog_context(request, session, principal))
    context.update(_project_endpoints(request, session, principal, project))
    view = _project_view(session, principal, project)
    context.update(
        project=view.out,
        project_view=view,
        can_edit_projects=view.can_manage,
        can_delete_projects=view.can_delete,
    )
    return render(request, "project.html", context)


@signed_in
def project_endpoints_fragment(
    request: Request, session: Session, principal: Principal
) -> Response:
    project = projects.find_project(session, principal, request.path_params["project"])
    context = _project_endpoints(request, session, principal, project)
    return render(request, "_project_endpoints.html", context)


def _project_endpoints(
    request: Request, session: Session, principal: Principal, project: Project
) -> dict[str, Any]:
    rows, total = endpoints.list_endpoints(session, principal, project.id, None, MAX_PAGE_SIZE, 0)
    views = [endpoint_view(row, principal, _settings(request).advertised_url) for row in rows]
    return {
        "principal": principal,
        "project_id": project.id,
        "endpoints": views,
        "total": total,
        # The endpoints that keep the project from being deleted, as the API counts them.
        "blocking_endpoints": projects.count_endpoints(session, project),
        "poll_ms": poll_interval_ms(views),
    }


# The endpoint window.


@signed_in
def endpoint_page(request: Request, session: Session, principal: Principal) -> Response:
    endpoint = endpoints.find_endpoint(session, principal, request.path_params["endpoint"])
    view = endpoint_view(endpoint, principal, _settings(request).advertised_url)
    key_rows = [key_out(row) for row in keys.list_keys(session, endpoint)]
    context = chrome(session, principal, section="projects")
    context.update(_dialog_context(request, session, principal))
    context.update(
        view=view,
        poll_ms=poll_interval_ms([view]),
        keys=key_rows,
        active_keys=[row for row in key_rows if row.status == KeyStatus.ACTIVE],
        mask_key=mask_key,
        # The playground's limit for max tokens: the endpoint's setting, or the fixed
        # limit of Echo, which has no such setting.
        # NOTE: the model's context length can be smaller, but neither the endpoint,
        # instance nor model API reports it, so the playground cannot show it.
        max_completion_tokens=view.out.runtime_settings.max_completion_tokens
        or DEFAULT_MAX_COMPLETION_TOKENS,
        in_active_tenant=endpoint.tenant_id == principal.tenant_id,
    )
    return render(request, "endpoint.html", context)


@signed_in
def endpoint_details_fragment(request: Request, session: Session, principal: Principal) -> Response:
    endpoint = endpoints.find_endpoint(session, principal, request.path_params["endpoint"])
    view = endpoint_view(endpoint, principal, _settings(request).advertised_url)
    context = {
        "principal": principal,
        "view": view,
        "poll_ms": poll_interval_ms([view]),
    }
    return render(request, "_endpoint_details.html", context)
