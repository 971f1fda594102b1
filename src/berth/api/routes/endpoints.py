"""Endpoints and their API keys."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from berth.api.convert import endpoint_out, key_out
from berth.api.deps import (
    LimitsDep,
    PrincipalDep,
    SessionDep,
    SettingsDep,
    apply_change,
)
from berth.api.schemas import (
    EndpointCreate,
    EndpointCreated,
    EndpointOut,
    EndpointUpdate,
    KeyCreate,
    KeyOut,
    KeyRevoked,
    KeyUpdate,
    Page,
    RuntimeSettingsIn,
)
from berth.api.strict_json import StrictJSONRoute
from berth.db.models import Endpoint, EndpointKey
from berth.service import endpoints as service
from berth.service import keys as key_service
from berth.service.common import MAX_OFFSET, MAX_PAGE_SIZE
from berth.service.runtime_settings import RuntimeSettings
from berth.states import EndpointState, KeyStatus

router = APIRouter(prefix="/endpoints", tags=["endpoints"], route_class=StrictJSONRoute)

ProjectQuery = Annotated[
    str | None, Query(description="project name or ID; needed when a name is in several")
]


# FastAPI (0.165) runs a route's dependencies before it validates the request body, so a
# route that lists one of these returns 404 for an unknown endpoint or key before it
# returns 422 for an invalid body. A body that is not JSON at all fails first, because
# FastAPI decodes it before the dependencies run. The route looks the rows up again.
def _require_endpoint(
    endpoint: str, session: SessionDep, principal: PrincipalDep, project: ProjectQuery = None
) -> None:
    service.find_endpoint(session, principal, endpoint, project)


def _require_key(
    endpoint: str,
    key: str,
    session: SessionDep,
    principal: PrincipalDep,
    project: ProjectQuery = None,
) -> None:
    row = service.find_endpoint(session, principal, endpoint, project)
    key_service.find_key(session, row, key)


@router.get("", response_model=Page[EndpointOut])
def list_endpoints(
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    project: ProjectQuery = None,
    state: EndpointState | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[EndpointOut]:
    """List endpoints of the active tenant and those shared with all tenants."""
    rows, total = service.list_endpoints(session, principal, project, state, limit, offset)
    return Page(
        items=[endpoint_out(row, settings.advertised_url) for row in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post("", response_model=EndpointCreated, status_code=status.HTTP_201_CREATED)
def create_endpoint(
    body: EndpointCreate,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    limits: LimitsDep,
    request: Request,
) -> EndpointCreated:
    """Create an endpoint and its first key; it deploys in the background."""

    def create() -> tuple[Endpoint, str]:
        return service.create_endpoint(
            session,
            principal,
            limits,
            project_ref=body.project,
            name=body.name,
            model_ref=body.model,
            instances=body.instances,
            description=body.description,
            share_with_all_tenants=body.share_with_all_tenants,
            runtime_settings=_runtime_settings(body.runtime_settings),
        )

    endpoint, key = apply_change(session, request, create)
    out = endpoint_out(endpoint, settings.advertised_url)
    return EndpointCreated(**out.model_dump(), first_key=key)


def _runtime_settings(body: RuntimeSettingsIn | None) -> RuntimeSettings:
    if body is None:
        return RuntimeSettings()
    # A setting sent as null is reset. One left out is not in model_fields_set.
    reset = frozenset(name for name in body.model_fields_set if getattr(body, name) is None)
    return RuntimeSettings(
        max_batch_size=body.max_batch_size,
        max_batch_wait_ms=body.max_batch_wait_ms,
        runtime=body.runtime.value if body.runtime is not None else None,
        max_completion_tokens=body.max_completion_tokens,
        context_length=body.context_length,
        reset=reset,
    )


@router.get("/{endpoint}", response_model=EndpointOut)
def get_endpoint(
    endpoint: str,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    project: ProjectQuery = None,
) -> EndpointOut:
    """Show one endpoint, named by name or ID, with its instances."""
    row = service.find_endpoint(session, principal, endpoint, project)
    return endpoint_out(row, settings.advertised_url)


@router.patch("/{endpoint}", response_model=EndpointOut, dependencies=[Depends(_require_endpoint)])
def update_endpoint(
    endpoint: str,
    body: EndpointUpdate,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    limits: LimitsDep,
    request: Request,
    project: ProjectQuery = None,
) -> EndpointOut:
    """Change description, sharing, model, runtime settings or instances.

    Running instances are replaced or added before old ones are removed, and a value
    equal to the current one replaces no instance. A request that changes nothing
    leaves the version as it is."""
    change = service.EndpointChange(
        description=body.description,
        instances=body.instances,
        model=body.model,
        share_with_all_tenants=body.share_with_all_tenants,
        runtime_settings=_runtime_settings(body.runtime_settings),
        expected_version=body.version,
        force=body.force,
    )

    def update() -> Endpoint:
        row = service.find_endpoint(session, principal, endpoint, project)
        return service.update_endpoint(session, principal, limits, row, change)

    return endpoint_out(apply_change(session, request, update), settings.advertised_url)


@router.post("/{endpoint}/stop", response_model=EndpointOut)
def stop_endpoint(
    endpoint: str,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    request: Request,
    project: ProjectQuery = None,
) -> EndpointOut:
    """Stop every instance of the endpoint and free their slots."""

    def stop() -> Endpoint:
        row = service.find_endpoint(session, principal, endpoint, project)
        return service.stop_endpoint(session, principal, row)

    return endpoint_out(apply_change(session, request, stop), settings.advertised_url)


@router.post("/{endpoint}/restart", response_model=EndpointOut)
def restart_endpoint(
    endpoint: str,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    request: Request,
    project: ProjectQuery = None,
) -> EndpointOut:
    """Start a stopped or failed endpoint, or replace a running one's instances."""

    def restart() -> Endpoint:
        row = service.find_endpoint(session, principal, endpoint, project)
        return service.restart_endpoint(session, principal, row)

    return endpoint_out(apply_change(session, request, restart), settings.advertised_url)


@router.delete("/{endpoint}", response_model=EndpointOut)
def delete_endpoint(
    endpoint: str,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    request: Request,
    project: ProjectQuery = None,
) -> EndpointOut:
    """Mark the endpoint for deletion; its keys stop working at once."""

    def delete() -> Endpoint:
        row = service.find_endpoint(session, principal, endpoint, project)
        return service.delete_endpoint(session, principal, row)

    return endpoint_out(apply_change(session, request, delete), settings.advertised_url)


@router.get("/{endpoint}/keys", response_model=list[KeyOut])
def list_keys(
    endpoint: str, session: SessionDep, principal: PrincipalDep, project: ProjectQuery = None
) -> list[KeyOut]:
    """List every key of the endpoint, revoked ones included."""
    row = service.find_endpoint(session, principal, endpoint, project)
    return [key_out(key) for key in key_service.list_keys(session, row)]


@router.post(
    "/{endpoint}/keys",
    response_model=KeyOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(_require_endpoint)],
)
def add_key(
    endpoint: str,
    body: KeyCreate,
    session: SessionDep,
    principal: PrincipalDep,
    request: Request,
    project: ProjectQuery = None,
) -> KeyOut:
    """Add a key with a description."""

    def add() -> EndpointKey:
        row = service.find_endpoint(session, principal, endpoint, project)
        key, _secret = key_service.add_key(session, principal, row, body.description)
        return key

    return key_out(apply_change(session, request, add))


@router.get("/{endpoint}/keys/{key}", response_model=KeyOut)
def get_key(
    endpoint: str,
    key: str,
    session: SessionDep,
    principal: PrincipalDep,
    project: ProjectQuery = None,
) -> KeyOut:
    """Show one key, named by its ID, a unique start of its ID, or the key itself."""
    row = service.find_endpoint(session, principal, endpoint, project)
    return key_out(key_service.find_key(session, row, key))


@router.patch("/{endpoint}/keys/{key}", response_model=KeyOut, dependencies=[Depends(_require_key)])
def edit_key(
    endpoint: str,
    key: str,
    body: KeyUpdate,
    session: SessionDep,
    principal: PrincipalDep,
    request: Request,
    project: ProjectQuery = None,
) -> KeyOut:
    """Change a key's description. The first key and revoked keys cannot be edited."""

    def edit() -> EndpointKey:
        row = service.find_endpoint(session, principal, endpoint, project)
        key_row = key_service.find_key(session, row, key)
        key_service.edit_key(session, principal, row, key_row, body.description)
        return key_row

    return key_out(apply_change(session, request, edit))


@router.post("/{endpoint}/keys/{key}/revoke", response_model=KeyRevoked)
def revoke_key(
    endpoint: str,
    key: str,
    session: SessionDep,
    principal: PrincipalDep,
    request: Request,
    project: ProjectQuery = None,
) -> KeyRevoked:
    """Revoke a key for good; the first key cannot be revoked.

    Revoking a revoked key changes nothing and succeeds, with `already_revoked` true."""

    def revoke() -> tuple[EndpointKey, bool]:
        row = service.find_endpoint(session, principal, endpoint, project)
        key_row = key_service.find_key(session, row, key)
        already_revoked = key_row.status == KeyStatus.REVOKED
        key_service.revoke_key(session, principal, row, key_row)
        return key_row, already_revoked

    key_row, already_revoked = apply_change(session, request, revoke)
    return KeyRevoked(**key_out(key_row).model_dump(), already_revoked=already_revoked)
