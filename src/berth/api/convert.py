"""Conversion of ORM rows into API bodies."""

from berth.api.schemas import (
    AuditEntryOut,
    CheckpointOut,
    EndpointOut,
    InstanceOut,
    KeyOut,
    MembershipOut,
    ModelOut,
    PlatformKeyOut,
    ProjectOut,
    Reference,
    RuntimeSettingsOut,
    TenantOut,
    UserOut,
    WhoAmI,
)
from berth.auth import Principal
from berth.db.models import (
    AuditEntry,
    Endpoint,
    EndpointKey,
    Instance,
    Membership,
    Model,
    PlatformKey,
    Project,
    Tenant,
    User,
)
from berth.reconciler.plans import served_model
from berth.service.keys import reveal
from berth.service.runtime_settings import effective_settings
from berth.states import InstanceState, blocks_start


def user_ref(user: User) -> Reference:
    return Reference(id=user.id, name=user.username)


def whoami_out(principal: Principal) -> WhoAmI:
    tenant = None
    if principal.tenant_id is not None:
        tenant = Reference(id=principal.tenant_id, name=principal.tenant_name)
    return WhoAmI(
        user=Reference(id=principal.user_id, name=principal.username),
        is_org_admin=principal.is_org_admin,
        tenant=tenant,
        no_tenant_reason=principal.no_tenant_message() if tenant is None else None,
    )


def tenant_out(tenant: Tenant, principal: Principal) -> TenantOut:
    return TenantOut(
        id=tenant.id,
        name=tenant.name,
        disabled=tenant.disabled,
        created_at=tenant.created_at,
        role=principal.roles.get(tenant.id),
    )


def membership_out(membership: Membership) -> MembershipOut:
    return MembershipOut(
        user=user_ref(membership.user),
        tenant=Reference(id=membership.tenant.id, name=membership.tenant.name),
        role=membership.role,
    )


def user_out(user: User, principal: Principal) -> UserOut:
    """Convert a user; callers other than OrgAdmins see only their own tenants in it.

    `has_password` is shown to the user, to OrgAdmins and to TenantAdmins of the caller's
    active tenant, which the user is a member of whenever such a caller can see them.
    """

    def visible(tenant_id: str | None) -> bool:
        return principal.is_org_admin or tenant_id in principal.roles

    memberships = [membership for membership in user.memberships if visible(membership.tenant_id)]
    default_tenant = user.default_tenant if visible(user.default_tenant_id) else None
    may_see_password = (
        user.id == principal.user_id
        or principal.is_org_admin
        or (principal.tenant_id is not None and principal.is_tenant_admin(principal.tenant_id))
    )
    return UserOut(
        id=user.id,
        username=user.username,
        is_org_admin=user.is_org_admin,
        disabled=user.disabled,
        has_password=user.password_hash is not None if may_see_password else None,
        default_tenant_id=default_tenant.id if default_tenant else None,
        default_tenant_hidden=user.default_tenant_id is not None and default_tenant is None,
        default_tenant_disabled=default_tenant.disabled if default_tenant else False,
        memberships=[membership_out(membership) for membership in memberships],
        created_at=user.created_at,
    )


def platform_key_out(row: PlatformKey) -> PlatformKeyOut:
    return PlatformKeyOut(
        id=row.id,
        prefix=row.key_prefix,
        description=row.description,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def audit_out(entry: AuditEntry) -> AuditEntryOut:
    actor = Reference(id=entry.actor_id, name=entry.actor_name) if entry.actor_id else None
    return AuditEntryOut(
        id=entry.id,
        created_at=entry.created_at,
        actor=actor,
        tenant_id=entry.tenant_id,
        action=entry.action,
        resource_type=entry.resource_type,
        resource_id=entry.resource_id,
        resource_name=entry.resource_name,
        source_address=entry.source_address,
        details=entry.details,
    )


def project_out(project: Project) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        name=project.name,
        description=project.description,
        tenant=Reference(id=project.tenant.id, name=project.tenant.name),
        owner=user_ref(project.owner),
        created_at=project.created_at,
        version=project.version,
    )


def model_out(model: Model) -> ModelOut:
    return ModelOut(
        id=model.id,
        name=model.name,
        description=model.description,
        ml_app=model.ml_app,
        ml_app_name=model.ml_app.display_name,
        architecture=model.architecture,
        field_of_application=model.field_of_application,
        owner=user_ref(model.owner) if model.owner else None,
        is_base=model.is_base,
        is_builtin=model.is_builtin,
        is_demo=model.is_demo,
        sharing=model.sharing,
        tenant_id=model.tenant_id,
        checkpoints=[
            CheckpointOut(
                id=row.id,
                name=row.name,
                format=row.format,
                size_bytes=row.size_bytes,
                checksum=row.checksum,
                linked=row.linked,
                architecture=row.architecture,
                has_chat_template=row.has_chat_template,
                trained_context_length=row.trained_context_length,
                created_at=row.created_at,
            )
            for row in model.checkpoints
            if row.deleted_at is None
        ],
        created_at=model.created_at,
    )


def instance_out(row: Instance, endpoint: Endpoint) -> InstanceOut:
    model_name, checkpoint_name = served_model(row, endpoint)
    return InstanceOut(
        id=row.id,
        state=row.state,
        restart_count=row.restart_count,
        generation=row.generation,
        pid=row.pid,
        # The row of an exited instance keeps the address of its ended process.
        address="" if row.state == InstanceState.EXITED else row.address,
        started_at=row.started_at,
        ready_at=row.ready_at,
        last_error=row.last_error,
        # A blocked start leaves the instance Exited. A start that gets past the file
        # check keeps the old last_error, so only an Exited instance counts as blocked.
        start_blocked=row.state == InstanceState.EXITED and blocks_start(row.last_error),
        runtime=row.runtime,
        runtime_note=row.runtime_note,
        model_name=model_name,
        checkpoint_name=checkpoint_name,
    )


def shown_state_reason(endpoint: Endpoint) -> str:
    """Return the stored state reason, followed by a note when the endpoint's tenant is
    disabled. The stored state stays as it is, so the endpoint serves again once the
    tenant is enabled, but until then the gateway rejects every request with 403."""
    if not endpoint.tenant.disabled:
        return endpoint.state_reason
    note = (
        f"tenant '{endpoint.tenant.name}' is disabled, so the gateway rejects every "
        "request (403 tenant_disabled)"
    )
    # The stored reason comes first, so readers that match its start still find it.
    return f"{endpoint.state_reason}; {note}" if endpoint.state_reason else note


def endpoint_out(endpoint: Endpoint, server_url: str) -> EndpointOut:
    url = f"{server_url}/endpoints/{endpoint.id}"
    open_instances = endpoint.open_instances
    return EndpointOut(
        id=endpoint.id,
        name=endpoint.name,
        description=endpoint.description,
        project=Reference(id=endpoint.project.id, name=endpoint.project.name),
        tenant_id=endpoint.tenant_id,
        tenant=Reference(id=endpoint.tenant.id, name=endpoint.tenant.name),
        model=Reference(id=endpoint.model.id, name=endpoint.model.name),
        checkpoint=(
            Reference(id=endpoint.checkpoint.id, name=endpoint.checkpoint.name)
            if endpoint.checkpoint
            else None
        ),
        ml_app=endpoint.model.ml_app,
        ml_app_name=endpoint.model.ml_app.display_name,
        instances=endpoint.instances,
        ready_instances=sum(1 for row in open_instances if row.state == InstanceState.READY),
        instance_list=[instance_out(row, endpoint) for row in open_instances],
        state=endpoint.state,
        state_reason=shown_state_reason(endpoint),
        tenant_disabled=endpoint.tenant.disabled,
        desired_state=endpoint.desired_state,
        share_with_all_tenants=endpoint.share_with_all_tenants,
        runtime_settings=RuntimeSettingsOut(
            **effective_settings(
                endpoint.settings or {},
                endpoint.model.ml_app,
                endpoint.checkpoint.format if endpoint.checkpoint else None,
            )
        ),
        generation=endpoint.generation,
        observed_generation=endpoint.observed_generation,
        observed_instances=endpoint.observed_instances,
        owner=user_ref(endpoint.owner),
        url=url,
        openai_base_url=f"{url}/v1",
        version=endpoint.version,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def key_out(row: EndpointKey) -> KeyOut:
    return KeyOut(
        id=row.id,
        key=reveal(row),
        description=row.description,
        status=row.status,
        is_first=row.is_first,
        owner=user_ref(row.owner),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
