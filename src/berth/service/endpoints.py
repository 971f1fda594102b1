"""Endpoints: create, find, list, update, stop, restart and delete.

Handlers record only the desired state (`desired_state`, `instances`, `generation`);
the reconciler moves the observed `state` and starts and stops instances.
"""

import logging
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from berth.auth import Principal
from berth.db.models import Checkpoint, Endpoint, Model, Project, utcnow
from berth.errors import (
    CapacityError,
    Conflict,
    InputChecks,
    InvalidInput,
    NotFound,
    value_text,
)
from berth.names import name_key, normalize_name
from berth.runtime.selection import GGUF_INSTALL_HINT, llama_cpp_installed
from berth.service import audit, organization
from berth.service.common import lock_row, looks_like_id, mark_changed, new_id
from berth.service.keys import create_first_key
from berth.service.models import find_checkpoint, lock_for_endpoint
from berth.service.projects import find_project
from berth.service.runtime_settings import (
    RuntimeSettings,
    changed_settings,
    effective_settings,
    merge_settings,
)
from berth.states import CheckpointFormat, DesiredState, EndpointState

logger = logging.getLogger(__name__)


@dataclass
class Limits:
    capacity: int
    max_instances_per_endpoint: int


@dataclass
class EndpointChange:
    description: str | None = None
    instances: int | None = None
    model: str | None = None
    share_with_all_tenants: bool | None = None
    runtime_settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    # The version the caller last read; a stale one is rejected with 409.
    expected_version: int | None = None
    # Allow a move to a checkpoint that lacks the chat template of the current one.
    force: bool = False


def _not_deleted():  # type: ignore[no-untyped-def]
    return Endpoint.deleted_at.is_(None)


def find_endpoint(
    session: Session, principal: Principal, ref: str, project_ref: str | None = None
) -> Endpoint:
    """Find an endpoint by ID (in any tenant the caller can see) or by name.

    Names are unique per project, so a name is looked up in the given project, or in
    every project of the active tenant when none is given. A name not found in the
    active tenant is looked up among the endpoints of other tenants that are shared with
    all tenants, which `list_endpoints` lists too.
    """
    ref = ref.strip()
    if looks_like_id(ref):
        endpoint = session.get(Endpoint, ref.lower())
        if endpoint is None or not principal.can_view_endpoint(endpoint):
            raise NotFound(f"endpoint '{ref}' not found", field="endpoint")
        if endpoint.deleted_at is not None and not _has_open_instances(endpoint):
            raise NotFound(f"endpoint '{ref}' not found", field="endpoint")
        return endpoint

    project: Project | None = None
    missing_project: NotFound | None = None
    if project_ref:
        try:
            project = find_project(session, principal, project_ref)
        except NotFound as exc:
            # The project may be one of another tenant that has a shared endpoint.
            missing_project = exc

    matches = [] if missing_project else _named_in_active_tenant(session, principal, ref, project)
    if len(matches) > 1:
        projects = ", ".join(sorted(endpoint.project.name for endpoint in matches))
        raise Conflict(
            f"endpoint name '{ref}' exists in several projects ({projects}); "
            "name the project with --project or use the endpoint ID",
            field="endpoint",
        )
    if matches:
        return matches[0]

    shared = _named_among_shared(session, principal, ref, project_ref)
    if len(shared) > 1:
        described = "; ".join(
            f"tenant '{endpoint.tenant.name}', project '{endpoint.project.name}', ID {endpoint.id}"
            for endpoint in shared
        )
        raise Conflict(
            f"endpoint name '{ref}' matches {len(shared)} endpoints shared with all tenants "
            f"({described}); use the ID of the one you mean",
            field="endpoint",
        )
    if shared:
        return shared[0]
    if missing_project is not None:
        raise missing_project
    where = f"project '{project_ref}'" if project_ref else f"tenant '{principal.tenant_name}'"
    raise NotFound(
        f"endpoint '{ref}' not found in {where} or among the endpoints shared with all tenants",
        field="endpoint",
    )


def _named_in_active_tenant(
    session: Session, principal: Principal, name: str, project: Project | None
) -> list[Endpoint]:
    query = select(Endpoint).where(
        _not_deleted(),
        Endpoint.tenant_id == principal.active_tenant_id,
        Endpoint.name_key == name_key(name),
    )
    if project is not None:
        query = query.where(Endpoint.project_id == project.id)
    return list(session.scalars(query).all())


def _named_among_shared(
    session: Session, principal: Principal, name: str, project_ref: str | None
) -> list[Endpoint]:
    """Return the endpoints of other tenants, shared with all tenants, that have this name.

    `project_ref` is a project name or ID in the endpoint's own tenant.
    """
    query = (
        select(Endpoint)
        .join(Project, Endpoint.project_id == Project.id)
        .where(
            _not_deleted(),
            Endpoint.share_with_all_tenants.is_(True),
            Endpoint.tenant_id != principal.active_tenant_id,
            Endpoint.name_key == name_key(name),
        )
        .order_by(Endpoint.created_at, Endpoint.id)
    )
    if project_ref:
        project_ref = project_ref.strip()
        if looks_like_id(project_ref):
            query = query.where(Project.id == project_ref.lower())
        else:
            query = query.where(Project.name_key == name_key(project_ref))
    return list(session.scalars(query).all())


def _has_open_instances(endpoint: Endpoint) -> bool:
    return any(instance.ended_at is None for instance in endpoint.instance_rows)


def list_endpoints(
    session: Session,
    principal: Principal,
    project_ref: str | None,
    state: EndpointState | None,
    limit: int,
    offset: int,
) -> tuple[list[Endpoint], int]:
    """List the endpoints of the active tenant, plus those shared with all tenants."""
    conditions = [
        _not_deleted(),
        (Endpoint.tenant_id == principal.active_tenant_id)
        | Endpoint.share_with_all_tenants.is_(True),
    ]
    if project_ref:
        conditions.append(Endpoint.project_id == find_project(session, principal, project_ref).id)
    if state is not None:
        conditions.append(Endpoint.state == state)
    total = session.scalar(select(func.count()).select_from(Endpoint).where(*conditions)) or 0
    # Load what each listed endpoint shows in a few queries per page, not several per
    # endpoint.
    rows = session.scalars(
        select(Endpoint)
        .where(*conditions)
        .order_by(Endpoint.created_at, Endpoint.id)
        .limit(limit)
        .offset(offset)
        .options(
            selectinload(Endpoint.open_instances),
            selectinload(Endpoint.tenant),
            selectinload(Endpoint.project),
            selectinload(Endpoint.model),
            selectinload(Endpoint.checkpoint),
        )
    ).all()
    return list(rows), total


def _check_instances(value: int, limits: Limits) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            f"instances must be a whole number, got {value_text(value)}", field="instances"
        )
    maximum = min(limits.max_instances_per_endpoint, limits.capacity)
    if not 1 <= value <= maximum:
        raise InvalidInput(
            f"instances {value} is out of range: use 1 to {maximum} "
            f"(the platform has {limits.capacity} instance "
            f"{'slot' if limits.capacity == 1 else 'slots'})",
            field="instances",
        )
    return value


def _check_deployable(model: Model, checkpoint: Checkpoint | None) -> None:
    if model.is_base:
        raise InvalidInput(
            f"model '{model.name}' is a base model: base models are meant for training and "
            "cannot be deployed to an endpoint; choose a model that is not a base model",
            field="model",
        )
    if checkpoint is not None and checkpoint.format == CheckpointFormat.GGUF:
        # Instances run in the server's Python environment (the local backend starts
        # them with the server's interpreter), so a missing package shows here at once.
        if not llama_cpp_installed():
            raise InvalidInput(
                f"model '{model.name}' is a GGUF model, which needs the llama.cpp runtime, "
                "and llama-cpp-python is not installed on the Berth server; install it with "
                f"`{GGUF_INSTALL_HINT}` in Berth's folder",
                field="model",
            )


def slots_in_use(session: Session, excluding: str | None = None) -> int:
    """Instance slots held by endpoints that are deployed or on their way to it."""
    holding = [
        EndpointState.DEPLOYING,
        EndpointState.LIVE,
        EndpointState.UPDATING,
        EndpointState.STOPPING,
        EndpointState.DELETING,
    ]
    query = select(func.coalesce(func.sum(Endpoint.instances), 0)).where(
        Endpoint.state.in_(holding),
        Endpoint.desired_state == DesiredState.RUNNING,
        _not_deleted(),
    )
    if excluding is not None:
        query = query.where(Endpoint.id != excluding)
    return int(session.scalar(query) or 0)


def create_endpoint(
    session: Session,
    principal: Principal,
    limits: Limits,
    *,
    project_ref: str,
    name: str,
    model_ref: str,
    instances: int,
    description: str = "",
    share_with_all_tenants: bool = False,
    runtime_settings: RuntimeSettings | None = None,
) -> tuple[Endpoint, str]:
    """Record a new endpoint and its first key; returns the endpoint and the key.

    An InvalidInput names every invalid field. An unknown project or model raises
    NotFound at once, and a taken name raises Conflict once every field is valid.
    """
    # The lock keeps a concurrent delete of the project from leaving this endpoint in it.
    project = find_project(session, principal, project_ref, lock=True)
    checks = InputChecks()
    with checks.check():
        name = normalize_name(name, field="name")
    with checks.check():
        instances = _check_instances(instances, limits)
    with checks.check():
        model, checkpoint = find_checkpoint(session, principal, model_ref)
        _check_deployable(model, checkpoint)
        settings = merge_settings({}, runtime_settings or RuntimeSettings(), model, checkpoint)
    if share_with_all_tenants:
        with checks.check():
            _check_sharing_allowed(session)
    checks.raise_failures()
    _check_unique_name(session, name, project)

    now = utcnow()
    endpoint = Endpoint(
        id=new_id(),
        tenant_id=project.tenant_id,
        project_id=project.id,
        name=name,
        name_key=name_key(name),
        description=description,
        owner_id=principal.user_id,
        model_id=model.id,
        checkpoint_id=checkpoint.id if checkpoint else None,
        share_with_all_tenants=share_with_all_tenants,
        desired_state=DesiredState.RUNNING,
        instances=instances,
        generation=1,
        state=EndpointState.PENDING,
        state_reason="queued for deployment",
        created_at=now,
        updated_at=now,
        state_changed_at=now,
        settings=settings,
    )
    session.add(endpoint)
    key = create_first_key(session, endpoint, principal)
    mark_changed(session, endpoint)
    _check_project_still_there(session, project, project_ref, principal)
    # The lock keeps a concurrent delete of the model or checkpoint from succeeding too.
    lock_for_endpoint(session, model, checkpoint, "created")
    audit.record(
        session,
        principal,
        "endpoint.created",
        "endpoint",
        endpoint.id,
        name,
        endpoint.tenant_id,
        project=project.name,
        model=model.name,
        instances=instances,
        **({"runtime_settings": settings} if settings else {}),
    )
    return endpoint, key


def _check_project_still_there(
    session: Session, project: Project, ref: str, principal: Principal
) -> None:
    """Raise NotFound when a concurrent delete removed the project after it was found.

    The endpoint's rows are written first. On SQLite that takes the write lock, so no
    delete can commit between this read and the commit, and a delete that committed
    before it shows here. (Python's sqlite3 module begins the transaction only at the
    first write, so the earlier lookup ran outside it.) On PostgreSQL the lookup's lock
    already made a delete wait.
    """
    session.flush()
    deleted_at = session.scalar(select(Project.deleted_at).where(Project.id == project.id))
    if deleted_at is not None:
        raise NotFound(
            f"project '{ref}' not found in tenant '{principal.tenant_name}'; it was deleted "
            "while the endpoint was being created",
            field="project",
        )


def _check_unique_name(session: Session, name: str, project: Project) -> None:
    # The partial unique index catches a concurrent duplicate too; the API turns that
    # IntegrityError into 409 as well.
    existing = session.scalar(
        select(Endpoint.name).where(
            Endpoint.project_id == project.id,
            Endpoint.name_key == name_key(name),
            _not_deleted(),
        )
    )
    if existing is None:
        return
    message = f"an endpoint named '{existing}' already exists in project '{project.name}'"
    if existing != name:
        message += f", and endpoint names ignore case, so '{name}' is taken too"
    raise Conflict(f"{message}; choose another name", field="name")


def _check_sharing_allowed(session: Session) -> None:
    if not organization.get_settings(session).share_with_all_tenants:
        raise InvalidInput(
            "sharing with all tenants is turned off for this organization; "
            "an OrgAdmin can turn it on (berth org set-sharing --on); until then endpoints "
            "are shared with their tenant",
            field="share_with_all_tenants",
        )


def lock_for_change(session: Session, endpoint: Endpoint) -> None:
    """Lock the endpoint's row for this transaction and reload it (see `lock_row`).

    No version or generation bump of a concurrent change is lost, and the optimistic
    `version` check compares with the latest version.
    """
    lock_row(session, endpoint, Endpoint.version)


def update_endpoint(
    session: Session,
    principal: Principal,
    limits: Limits,
    endpoint: Endpoint,
    change: EndpointChange,
) -> Endpoint:
    principal.require_manage(endpoint, "update")
    lock_for_change(session, endpoint)
    _require_not_deleted(endpoint)
    if change.expected_version is not None and change.expected_version != endpoint.version:
        raise Conflict(
            f"endpoint '{endpoint.name}' was changed by someone else (version "
            f"{endpoint.version}, you sent {change.expected_version}); read it again and retry",
            field="version",
            current_version=endpoint.version,
        )

    # Every field is checked before anything changes, so that one InvalidInput names
    # all invalid fields.
    checks = InputChecks()
    if change.share_with_all_tenants and not endpoint.share_with_all_tenants:
        with checks.check():
            _check_sharing_allowed(session)
    model, checkpoint = endpoint.model, endpoint.checkpoint
    stored = dict(endpoint.settings or {})
    settings = stored
    with checks.check():
        if change.model is not None:
            model, checkpoint = _find_replacement_model(session, principal, endpoint, change.model)
        checkpoint_id = checkpoint.id if checkpoint else None
        model_changed = model.id != endpoint.model_id or checkpoint_id != endpoint.checkpoint_id
        if model_changed or change.runtime_settings.requested():
            # Checked against the new model, since its checkpoint may need another runtime.
            settings = merge_settings(stored, change.runtime_settings, model, checkpoint)
    if change.instances is not None:
        with checks.check():
            instances = _check_instances(change.instances, limits)
    checks.raise_failures()
    if model_changed:
        # The endpoint's row is written already, so this check works on SQLite too.
        lock_for_endpoint(session, model, checkpoint, "updated")
    if model_changed and not change.force:
        _check_keeps_chat_template(endpoint, model, checkpoint)

    # Only values that differ count as changes, so that a request that changes nothing
    # leaves the version alone and does not fail other clients' version checks.
    changed: dict[str, object] = {}
    if change.description is not None and change.description != endpoint.description:
        endpoint.description = change.description
        changed["description"] = change.description
    share = change.share_with_all_tenants
    if share is not None and share != endpoint.share_with_all_tenants:
        endpoint.share_with_all_tenants = share
        changed["share_with_all_tenants"] = share

    # A new model, checkpoint or runtime setting needs new instances, so the reconciler
    # replaces those of older generations in a rolling update.
    needs_new_instances = False
    if model_changed:
        endpoint.model_id = model.id
        endpoint.model = model
        endpoint.checkpoint_id = checkpoint_id
        endpoint.checkpoint = checkpoint
        needs_new_instances = True
        changed["model"] = model.name
        changed["checkpoint"] = checkpoint.name if checkpoint else None
    checkpoint_format = endpoint.checkpoint.format if endpoint.checkpoint else None
    changed_names = changed_settings(stored, settings, model.ml_app, checkpoint_format)
    if changed_names:
        needs_new_instances = True
    # A reset of a setting that was stored with its default value changes no instance, but
    # the endpoint follows the default from then on.
    removed_names = [name for name in stored if name not in settings]
    if changed_names or removed_names:
        # A new dict, because the JSON column does not track changes inside the old one.
        endpoint.settings = settings
        effective = effective_settings(settings, model.ml_app, checkpoint_format)
        changed["runtime_settings"] = {
            name: effective.get(name) for name in [*changed_names, *removed_names]
        }

    if change.instances is not None:
        _check_room_for(session, limits, endpoint, instances)
        # A Failed endpoint is retried only for a new generation, so for a Failed endpoint
        # even the same count is a change.
        failed = endpoint.state == EndpointState.FAILED
        if instances != endpoint.instances or failed:
            endpoint.instances = instances
            changed["instances"] = instances
        if failed:
            needs_new_instances = True
    if needs_new_instances:
        endpoint.generation += 1

    if not changed:
        return endpoint
    endpoint.version += 1
    endpoint.updated_at = utcnow()
    mark_changed(session, endpoint)
    _record(session, principal, "endpoint.updated", endpoint, **changed)
    return endpoint


def _find_replacement_model(
    session: Session, principal: Principal, endpoint: Endpoint, model_ref: str
) -> tuple[Model, Checkpoint | None]:
    model, checkpoint = find_checkpoint(session, principal, model_ref)
    _check_deployable(model, checkpoint)
    if model.ml_app != endpoint.model.ml_app:
        # An endpoint keeps its ML App, so its batching or runtime settings stay valid.
        raise InvalidInput(
            f"model '{model.name}' serves {model.ml_app.display_name}, but endpoint "
            f"'{endpoint.name}' serves {endpoint.model.ml_app.display_name}; "
            "create a new endpoint for another ML App",
            field="model",
        )
    return model, checkpoint


def _check_keeps_chat_template(
    endpoint: Endpoint, model: Model, checkpoint: Checkpoint | None
) -> None:
    """Raise Conflict when the endpoint would move from a checkpoint with a chat template
    to one without, because every chat request would then fail with 400.

    Checkpoints whose template is unknown (imported before Berth recorded it) pass."""
    current = endpoint.checkpoint
    if current is None or checkpoint is None:
        return
    if current.has_chat_template is not True or checkpoint.has_chat_template is not False:
        return
    raise Conflict(
        f"checkpoint '{model.name}:{checkpoint.name}' has no chat template, but endpoint "
        f"'{endpoint.name}' serves '{endpoint.model.name}:{current.name}', which has one, so "
        "every chat completion request would fail with 400 after the update; choose a "
        "checkpoint with a chat template; force moves it anyway, for an endpoint that "
        "serves only completions",
        field="model",
    )


def _record(
    session: Session, principal: Principal, action: str, endpoint: Endpoint, **details: object
) -> None:
    audit.record(
        session,
        principal,
        action,
        "endpoint",
        endpoint.id,
        endpoint.name,
        endpoint.tenant_id,
        **details,
    )


def _check_room_for(session: Session, limits: Limits, endpoint: Endpoint, instances: int) -> None:
    holds_slots = endpoint.state in (
        EndpointState.DEPLOYING,
        EndpointState.LIVE,
        EndpointState.UPDATING,
    )
    if not holds_slots or instances <= endpoint.instances:
        return
    held_by_others = slots_in_use(session, excluding=endpoint.id)
    max_instances = limits.capacity - held_by_others
    if instances > max_instances:
        raise CapacityError(
            f"cannot scale endpoint '{endpoint.name}' to {instances} instances: other "
            f"endpoints hold {held_by_others} of the platform's {limits.capacity} instance "
            f"slots, so it can have at most {max_instances}; stop another endpoint or ask for "
            "fewer instances",
            field="instances",
        )


def _require_not_deleted(endpoint: Endpoint) -> None:
    if endpoint.deleted_at is not None:
        raise Conflict(f"endpoint '{endpoint.name}' is being deleted")


def stop_endpoint(session: Session, principal: Principal, endpoint: Endpoint) -> Endpoint:
    principal.require_manage(endpoint, "stop")
    lock_for_change(session, endpoint)
    _require_not_deleted(endpoint)
    if endpoint.desired_state != DesiredState.STOPPED:
        endpoint.desired_state = DesiredState.STOPPED
        endpoint.version += 1
        endpoint.updated_at = utcnow()
        mark_changed(session, endpoint)
        _record(session, principal, "endpoint.stopped", endpoint)
    return endpoint


def restart_endpoint(session: Session, principal: Principal, endpoint: Endpoint) -> Endpoint:
    """Start a stopped or failed endpoint again; a running one gets fresh instances
    through a rolling replacement, so requests keep being served."""
    principal.require_manage(endpoint, "restart")
    lock_for_change(session, endpoint)
    _require_not_deleted(endpoint)
    checkpoint = endpoint.checkpoint
    if checkpoint is not None and checkpoint.format == CheckpointFormat.GGUF:
        if not llama_cpp_installed():
            # Every start would fail, and the reconciler would retry it with backoff.
            raise Conflict(
                f"endpoint '{endpoint.name}' serves the GGUF model '{endpoint.model.name}', "
                "which needs the llama.cpp runtime, and llama-cpp-python is not installed "
                f"on the Berth server; install it with `{GGUF_INSTALL_HINT}` in Berth's "
                "folder, then restart the endpoint",
            )
    endpoint.desired_state = DesiredState.RUNNING
    endpoint.generation += 1
    endpoint.version += 1
    endpoint.updated_at = utcnow()
    mark_changed(session, endpoint)
    _record(session, principal, "endpoint.restarted", endpoint)
    return endpoint


def delete_endpoint(session: Session, principal: Principal, endpoint: Endpoint) -> Endpoint:
    """Mark the endpoint deleted: its name is free and its keys stop working at once;
    the reconciler ends its instances afterwards."""
    principal.require_manage(endpoint, "delete")
    lock_for_change(session, endpoint)
    _require_not_deleted(endpoint)
    previous_state = endpoint.state
    now = utcnow()
    endpoint.desired_state = DesiredState.DELETED
    endpoint.deleted_at = now
    # Deleting is the one state a handler sets: the mark must be visible at once.
    endpoint.state = EndpointState.DELETING
    endpoint.state_reason = "marked for deletion"
    endpoint.state_changed_at = now
    endpoint.updated_at = now
    endpoint.version += 1
    mark_changed(session, endpoint)
    _record(session, principal, "endpoint.deleted", endpoint)
    # The reconciler logs the other state changes; this one happens here.
    logger.info(
        "endpoint %s (%s): %s -> Deleting, by user %s",
        endpoint.id,
        endpoint.name,
        previous_state,
        principal.username,
    )
    return endpoint
