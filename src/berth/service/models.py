"""The Model Hub: queries in the guide's four groups, registration and sharing.

A model is visible to its owner while the owner acts in the model's tenant. A model
shared with the tenant is visible to every member acting in it. Models shared with all
tenants, and built-in models, are visible to everyone.
Lists apply the same rule to OrgAdmins, so the hub of the active tenant stays readable;
an OrgAdmin may still open any model by ID.
"""

import logging
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import InstrumentedAttribute, Session

from berth.auth import Principal
from berth.db.models import Checkpoint, Endpoint, Instance, Model, User, utcnow
from berth.db.transactions import run_transaction
from berth.errors import Conflict, Forbidden, InputChecks, InvalidInput, NotFound
from berth.hub import importer
from berth.hub.builtin import BUILTIN_MODELS
from berth.names import name_key, normalize_name
from berth.reconciler.plans import LaunchPlan
from berth.service import audit, organization
from berth.service.common import lock_row, looks_like_id, new_id
from berth.states import CheckpointFormat, MLApp, ModelSharing

logger = logging.getLogger(__name__)

_BUILTIN_NAMES = {name_key(builtin.name) for builtin in BUILTIN_MODELS}
DEFAULT_CHECKPOINT = "main"
ECHO_ARTIFACT = "builtin:echo"
# Separates model and checkpoint in a reference such as "my-model:v2"; names never hold it.
CHECKPOINT_SEPARATOR = ":"


class ModelGroup(StrEnum):
    """The groups of the model picker."""

    MINE = "mine"
    SHARED = "shared"
    BERTH = "berth"
    ALL = "all"


@dataclass
class ModelFilter:
    group: ModelGroup = ModelGroup.ALL
    ml_app: MLApp | None = None
    architecture: str | None = None
    field_of_application: str | None = None
    owner: str | None = None
    is_base: bool | None = None
    search: str | None = None


def _visible(principal: Principal) -> ColumnElement[bool]:
    return and_(
        Model.deleted_at.is_(None),
        or_(
            Model.is_builtin.is_(True),
            Model.sharing == ModelSharing.ALL_TENANTS,
            and_(
                Model.tenant_id == principal.tenant_id,
                or_(Model.sharing == ModelSharing.TENANT, Model.owner_id == principal.user_id),
            ),
        ),
    )


def _group(principal: Principal, group: ModelGroup) -> ColumnElement[bool] | None:
    if group == ModelGroup.MINE:
        return Model.owner_id == principal.user_id
    if group == ModelGroup.BERTH:
        return Model.is_builtin.is_(True)
    if group == ModelGroup.SHARED:
        return and_(
            Model.is_builtin.is_(False),
            or_(Model.owner_id.is_(None), Model.owner_id != principal.user_id),
        )
    return None


def find_model(session: Session, principal: Principal, ref: str) -> Model:
    ref = ref.strip()
    if looks_like_id(ref):
        model = session.get(Model, ref.lower())
        if model is None or model.deleted_at is not None or not principal.can_view_model(model):
            raise NotFound(f"model '{ref}' not found in the Model Hub", field="model")
        return model

    matches = session.scalars(
        select(Model).where(_visible(principal), Model.name_key == name_key(ref))
    ).all()
    if not matches:
        raise NotFound(
            f"model '{ref}' not found in the Model Hub; `berth model list` shows the models",
            field="model",
        )
    if len(matches) > 1:
        # Prefer the caller's own tenant when another tenant shares a model of that name.
        own = [model for model in matches if model.tenant_id == principal.tenant_id]
        if len(own) == 1:
            return own[0]
        raise Conflict(
            f"several models named '{ref}' are visible to you; use the model ID",
            field="model",
        )
    return matches[0]


def list_models(
    session: Session, principal: Principal, filters: ModelFilter, limit: int, offset: int
) -> tuple[list[Model], int]:
    conditions: list[ColumnElement[bool]] = [_visible(principal)]
    group = _group(principal, filters.group)
    if group is not None:
        conditions.append(group)
    if filters.ml_app is not None:
        conditions.append(Model.ml_app == filters.ml_app)
    if filters.architecture:
        conditions.append(func.lower(Model.architecture) == filters.architecture.strip().lower())
    if filters.field_of_application:
        conditions.append(
            func.lower(Model.field_of_application) == filters.field_of_application.strip().lower()
        )
    if filters.owner:
        conditions.append(_owner_condition(filters.owner))
    if filters.is_base is not None:
        conditions.append(Model.is_base.is_(filters.is_base))
    if filters.search and filters.search.strip():
        pattern = f"%{_escape_like(filters.search.strip().lower())}%"
        conditions.append(
            or_(
                func.lower(Model.name).like(pattern, escape="\\"),
                func.lower(Model.description).like(pattern, escape="\\"),
                func.lower(Model.architecture).like(pattern, escape="\\"),
                func.lower(Model.field_of_application).like(pattern, escape="\\"),
            )
        )

    total = session.scalar(select(func.count()).select_from(Model).where(*conditions)) or 0
    rows = session.scalars(
        select(Model)
        .where(*conditions)
        .order_by(Model.name_key, Model.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


@dataclass
class ModelFacets:
    """Distinct values among the models a caller can see, offered as Model Hub filters."""

    ml_apps: list[MLApp]
    architectures: list[str]
    fields_of_application: list[str]
    # User names of model owners; built-in models have no owner and match the 'berth' filter.
    owners: list[str]
    has_builtin: bool


def model_facets(session: Session, principal: Principal) -> ModelFacets:
    visible = _visible(principal)

    def distinct(column: InstrumentedAttribute[str]) -> list[str]:
        values = session.scalars(select(column).where(visible).distinct())
        return sorted({value for value in values if value}, key=str.lower)

    apps = set(session.scalars(select(Model.ml_app).where(visible).distinct()))
    owners = session.scalars(
        select(User.username).join(Model, Model.owner_id == User.id).where(visible).distinct()
    )
    builtin_count = session.scalar(
        select(func.count()).select_from(Model).where(visible, Model.is_builtin.is_(True))
    )
    return ModelFacets(
        ml_apps=[app for app in MLApp if app in apps],
        architectures=distinct(Model.architecture),
        fields_of_application=distinct(Model.field_of_application),
        owners=sorted(owners, key=str.lower),
        has_builtin=bool(builtin_count),
    )


def _owner_condition(owner: str) -> ColumnElement[bool]:
    owner = owner.strip().lower()
    if owner in ("berth", "builtin"):
        return Model.is_builtin.is_(True)
    owners = select(User.id).where(User.username_key == owner)
    return Model.owner_id.in_(owners)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class NewModel:
    name: str
    ml_app: MLApp
    path: str
    architecture: str = ""
    field_of_application: str = ""
    description: str = ""
    is_base: bool = False
    sharing: ModelSharing = ModelSharing.PRIVATE


def require_server_files_access(principal: Principal) -> None:
    """Raise Forbidden unless the caller may read model files from paths on the server.

    The server's file system belongs to the organization, not to a tenant, so only an
    OrgAdmin may. Callers check this before the path is touched, so that the error does
    not reveal to others whether a path exists.
    """
    if not principal.is_org_admin:
        raise Forbidden(
            "only an OrgAdmin may import or register model files from a path on the Berth "
            "server, because its file system belongs to the organization. Ask an OrgAdmin "
            "to import the model and share it with your tenant"
        )


def _require_path(principal: Principal, new: NewModel) -> None:
    """Raise InvalidInput for a model that needs files but was given no path.

    For a caller who is not an OrgAdmin, the message adds that a path would be rejected
    too, because only an OrgAdmin may register files from the server.
    """
    if new.path.strip():
        return
    message = (
        f"path is missing; a {new.ml_app.display_name} model needs the folder or .gguf file "
        "of the model on the Berth server"
    )
    if not principal.is_org_admin:
        message += (
            ", and only an OrgAdmin may register model files from a path on the server. "
            "Ask an OrgAdmin to import the model and share it with your tenant"
        )
    raise InvalidInput(message, field="path")


def register_model(session: Session, principal: Principal, new: NewModel) -> Model:
    """Add a model whose files stay where they are on this machine (import copies them).

    An Echo model needs no files and any member of the tenant may register one. Others
    read a path on the server and need an OrgAdmin.
    """
    if new.ml_app != MLApp.ECHO:
        _require_path(principal, new)
        require_server_files_access(principal)
    tenant_id = principal.active_tenant_id
    name = normalize_name(new.name, field="name")
    if name_key(name) in _BUILTIN_NAMES:
        raise Conflict(f"'{name}' is the name of a built-in model; choose another", field="name")
    clash = session.scalar(
        select(Model.id).where(
            Model.tenant_id == tenant_id,
            Model.name_key == name_key(name),
            Model.deleted_at.is_(None),
        )
    )
    if clash:
        raise Conflict(
            f"a model named '{name}' already exists in tenant '{principal.tenant_name}'",
            field="name",
        )
    _check_sharing(session, new.sharing)
    files = CheckpointFiles(ECHO_ARTIFACT, CheckpointFormat.BUILTIN, 0, "", linked=True)
    if new.ml_app != MLApp.ECHO:
        inspection = importer.inspect_path(new.path)
        _check_ml_app(inspection, new.ml_app)
        root = importer.source_root(inspection)
        size, checksum = importer.digest_files(root, inspection.files)
        files = CheckpointFiles(
            str(inspection.source.resolve()),
            inspection.format,
            size,
            checksum,
            linked=True,
            architecture=inspection.architecture,
            has_chat_template=inspection.has_chat_template,
            file_stats=importer.file_stats(root, inspection.files),
            trained_context_length=inspection.trained_context_length,
        )

    model = Model(
        id=new_id(),
        name=name,
        name_key=name_key(name),
        description=new.description,
        ml_app=new.ml_app,
        architecture=new.architecture.strip(),
        field_of_application=new.field_of_application.strip(),
        owner_id=principal.user_id,
        tenant_id=tenant_id,
        is_base=new.is_base,
        sharing=new.sharing,
        artifact=files.artifact,
    )
    session.add(model)
    _add_checkpoint(session, model, DEFAULT_CHECKPOINT, files)
    audit.record(
        session,
        principal,
        "model.registered",
        "model",
        model.id,
        name,
        tenant_id,
        ml_app=new.ml_app.value,
        sharing=new.sharing.value,
    )
    return model


@dataclass(frozen=True)
class CheckpointFiles:
    """The facts about a checkpoint's files that its row stores."""

    artifact: str
    format: CheckpointFormat
    size: int
    checksum: str
    linked: bool
    architecture: str = ""
    has_chat_template: bool | None = None
    file_stats: dict[str, list[int]] | None = None
    trained_context_length: int | None = None


def _add_checkpoint(
    session: Session, model: Model, name: str, files: CheckpointFiles
) -> Checkpoint:
    checkpoint = Checkpoint(
        id=new_id(),
        model_id=model.id,
        name=name,
        name_key=name_key(name),
        artifact=files.artifact,
        format=files.format,
        size_bytes=files.size,
        checksum=files.checksum,
        linked=files.linked,
        architecture=files.architecture,
        has_chat_template=files.has_chat_template,
        file_stats=files.file_stats,
        trained_context_length=files.trained_context_length,
        created_at=utcnow(),
    )
    session.add(checkpoint)
    model.checkpoints.append(checkpoint)
    # The model's artifact follows its newest checkpoint, the default for new endpoints.
    model.artifact = files.artifact
    return checkpoint


def _check_ml_app(inspection: importer.Inspection, ml_app: MLApp) -> None:
    if inspection.ml_app is not None and inspection.ml_app != ml_app:
        raise InvalidInput(
            f"the files at '{inspection.source}' hold a {inspection.architecture} model, "
            f"which serves {inspection.ml_app.display_name}, not {ml_app.display_name}",
            field="ml_app",
        )


def _check_sharing(session: Session, sharing: ModelSharing) -> None:
    if sharing == ModelSharing.ALL_TENANTS and not (
        organization.get_settings(session).share_with_all_tenants
    ):
        raise InvalidInput(
            "sharing with all tenants is turned off for this organization; "
            "an OrgAdmin can turn it on (berth org set-sharing --on); until then share the "
            "model with your tenant",
            field="sharing",
        )


def _require_not_builtin(model: Model, action: str) -> None:
    if model.is_builtin:
        raise Forbidden(f"model '{model.name}' is built into Berth; it cannot be {action}")


def update_model(
    session: Session,
    principal: Principal,
    model: Model,
    description: str | None,
    sharing: ModelSharing | None,
) -> Model:
    _require_not_builtin(model, "changed")
    if not principal.can_manage_model(model):
        raise Forbidden(
            f"you may not change model '{model.name}': only its owner, a TenantAdmin of "
            "its tenant or an OrgAdmin may"
        )
    if description is not None:
        model.description = description
    if sharing is not None and sharing != model.sharing:
        _check_sharing(session, sharing)
        model.sharing = sharing
    audit.record(
        session,
        principal,
        "model.updated",
        "model",
        model.id,
        model.name,
        model.tenant_id,
        sharing=model.sharing.value,
    )
    return model


def delete_model(
    session: Session, principal: Principal, model: Model, models_dir: Path
) -> list[Path]:
    """Mark the model deleted and return the folders of its copied files, which the
    caller removes with `remove_copied_files` once the deletion is committed."""
    _require_not_builtin(model, "deleted")
    if not principal.can_manage_model(model):
        raise Forbidden(
            f"you may not delete model '{model.name}': only its owner, a TenantAdmin of "
            "its tenant or an OrgAdmin may"
        )
    _lock_for_delete(session, model)
    if model.deleted_at is not None:
        raise NotFound(
            f"model '{model.name}' not found in the Model Hub; it was deleted by a concurrent "
            "request",
            field="model",
        )
    users = session.scalars(
        select(Endpoint).where(Endpoint.model_id == model.id, Endpoint.deleted_at.is_(None))
    ).all()
    if users:
        names = ", ".join(sorted(endpoint.name for endpoint in users))
        raise Conflict(
            f"model '{model.name}' is used by endpoints {names}; delete them or move them "
            "to another model first",
            field="model",
        )
    updating = _endpoints_with_instances_on(session, list(model.checkpoints))
    if updating:
        raise Conflict(
            f"old instances of endpoints {', '.join(sorted(updating))} still run on model "
            f"'{model.name}'; wait for their rolling update to another model to finish "
            "(`berth endpoint info` shows its progress), then delete the model",
            field="model",
        )
    model.deleted_at = utcnow()
    audit.record(
        session, principal, "model.deleted", "model", model.id, model.name, model.tenant_id
    )
    return [
        folder
        for row in model.checkpoints
        if (folder := copied_folder(row, models_dir)) is not None
    ]


def _lock_for_delete(session: Session, model: Model) -> None:
    """Lock the model's row before a delete of the model or one of its checkpoints reads
    which endpoints use them.

    An endpoint create or update share-locks the row (see `lock_for_endpoint`), so on
    PostgreSQL one of the two waits for the other to commit and then reads its change. On
    SQLite the UPDATE takes the database's write lock, so no endpoint change can commit
    between the reads below and the delete's commit.
    """
    lock_row(session, model, Model.deleted_at)


def lock_for_endpoint(
    session: Session, model: Model, checkpoint: Checkpoint | None, action: str
) -> None:
    """Share-lock the model's row until the transaction ends, and raise NotFound when a
    concurrent delete removed the model or the checkpoint after they were found.

    `action` is "created" or "updated", for the endpoint change that uses them. On
    PostgreSQL the lock makes a concurrent `delete_model` or `delete_checkpoint` wait for
    this transaction, or makes this one wait for the delete and then see it. SQLite
    ignores the lock, so the caller must have written a row first: the write lock then
    keeps a delete from committing before this transaction ends, and a delete that
    committed earlier shows here. (Python's sqlite3 module begins the transaction only
    at the first write, so reads before it may be older than the write.)
    """
    session.flush()
    model_deleted_at = session.scalar(
        select(Model.deleted_at).where(Model.id == model.id).with_for_update(read=True)
    )
    if model_deleted_at is not None:
        raise NotFound(
            f"model '{model.name}' not found in the Model Hub; it was deleted while the "
            f"endpoint was being {action}",
            field="model",
        )
    if checkpoint is None:
        return
    checkpoint_deleted_at = session.scalar(
        select(Checkpoint.deleted_at).where(Checkpoint.id == checkpoint.id)
    )
    if checkpoint_deleted_at is not None:
        reference = f"{model.name}{CHECKPOINT_SEPARATOR}{checkpoint.name}"
        raise NotFound(
            f"checkpoint '{reference}' not found; it was deleted while the endpoint was "
            f"being {action}. `berth model info {model.name}` lists the model's checkpoints",
            field="model",
        )


def copied_folder(checkpoint: Checkpoint, models_dir: Path) -> Path | None:
    """Return the folder that import copied the checkpoint's files into, or None for
    files that were linked, registered or built in, which Berth never removes.

    Only a folder inside `models_dir`/imported is returned, so a wrong artifact path
    cannot make Berth remove other files."""
    if checkpoint.linked or checkpoint.format == CheckpointFormat.BUILTIN:
        return None
    artifact = Path(checkpoint.artifact)
    folder = artifact.parent if checkpoint.format == CheckpointFormat.GGUF else artifact
    imported = (models_dir / "imported").resolve()
    folder = folder.resolve()
    if folder == imported or not folder.is_relative_to(imported):
        return None
    return folder


def remove_copied_files(folders: list[Path]) -> None:
    """Remove the folders of deleted checkpoints, after the deletion was committed.

    A folder that cannot be removed is logged and left, because the deletion itself
    succeeded; the empty folder of the model is removed too."""
    for folder in folders:
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.error("failed to remove the copied model files at %s: %s", folder, exc)
            continue
        try:
            folder.parent.rmdir()
        except OSError:
            # Other checkpoints of the model still have files there.
            pass


def delete_checkpoint(
    session: Session, principal: Principal, model: Model, checkpoint: Checkpoint, models_dir: Path
) -> list[Path]:
    """Mark one checkpoint deleted and return its copied folder, to remove after commit.

    Rejected while an endpoint is set to the checkpoint or an instance still runs on it,
    and for the model's only checkpoint, which `delete_model` removes with the model."""
    _require_not_builtin(model, "changed")
    if not principal.can_manage_model(model):
        raise Forbidden(
            f"you may not delete checkpoints of model '{model.name}': only its owner, a "
            "TenantAdmin of its tenant or an OrgAdmin may"
        )
    reference = f"{model.name}{CHECKPOINT_SEPARATOR}{checkpoint.name}"
    _lock_for_delete(session, model)
    session.refresh(checkpoint)
    if model.deleted_at is not None or checkpoint.deleted_at is not None:
        raise NotFound(
            f"checkpoint '{reference}' not found in the Model Hub; it was deleted by a "
            "concurrent request",
            field="checkpoint",
        )
    set_to, updating = _endpoints_using(session, checkpoint)
    problems = []
    if set_to:
        problems.append(
            f"checkpoint '{reference}' is used by endpoints {', '.join(sorted(set_to))}. "
            "Delete them or update them to another checkpoint first."
        )
    if updating:
        problems.append(
            f"Old instances of endpoints {', '.join(sorted(updating))} still run on "
            f"checkpoint '{reference}'. Wait for their rolling update to finish "
            "(`berth endpoint info` shows its progress), then delete the checkpoint."
        )
    if problems:
        raise Conflict(" ".join(problems).rstrip("."), field="checkpoint")
    live = [row for row in model.checkpoints if row.deleted_at is None]
    if live == [checkpoint]:
        raise Conflict(
            f"checkpoint '{reference}' is the only checkpoint of model '{model.name}'; "
            f"delete the model instead (berth model delete {model.name})",
            field="checkpoint",
        )
    checkpoint.deleted_at = utcnow()
    rest = [row for row in live if row is not checkpoint]
    # The model's artifact follows its newest remaining checkpoint, as after an import.
    model.artifact = max(rest, key=lambda row: row.created_at).artifact
    audit.record(
        session,
        principal,
        "model.checkpoint_deleted",
        "model",
        model.id,
        model.name,
        model.tenant_id,
        checkpoint=checkpoint.name,
    )
    folder = copied_folder(checkpoint, models_dir)
    return [folder] if folder is not None else []


def _endpoints_using(session: Session, checkpoint: Checkpoint) -> tuple[set[str], set[str]]:
    """Return the names of endpoints set to the checkpoint, and of endpoints set to another
    checkpoint or model that still have an open instance started on this one. Such an
    instance is an old one that serves until a rolling update finishes."""
    set_to = set(
        session.scalars(
            select(Endpoint.name).where(
                Endpoint.checkpoint_id == checkpoint.id, Endpoint.deleted_at.is_(None)
            )
        )
    )
    return set_to, _endpoints_with_instances_on(session, [checkpoint]) - set_to


def _endpoints_with_instances_on(session: Session, checkpoints: list[Checkpoint]) -> set[str]:
    """Return the names of endpoints with an open instance started on one of `checkpoints`,
    such as an old instance that serves until a rolling update finishes."""
    checkpoint_ids = {checkpoint.id for checkpoint in checkpoints}
    if not checkpoint_ids:
        return set()
    # The launch plan is JSON text, so the LIKE match only narrows the rows, and the
    # parsed plan decides.
    open_rows = session.execute(
        select(Instance, Endpoint.name)
        .join(Endpoint, Instance.endpoint_id == Endpoint.id)
        .where(
            Instance.ended_at.is_(None),
            Endpoint.deleted_at.is_(None),
            or_(*(Instance.launch.contains(key, autoescape=True) for key in checkpoint_ids)),
        )
    ).all()
    names = set()
    for row, endpoint_name in open_rows:
        plan = LaunchPlan.saved(row)
        if plan is not None and plan.checkpoint_id in checkpoint_ids:
            names.add(endpoint_name)
    return names


# -- checkpoints and import ---------------------------------------------------------


def find_checkpoint(
    session: Session, principal: Principal, ref: str
) -> tuple[Model, Checkpoint | None]:
    """Resolve "MODEL" or "MODEL:CHECKPOINT" (names or IDs) to a model and a checkpoint.

    Without a checkpoint the model's newest one is chosen; models without checkpoints
    (none are left after start-up) give None. An empty reference, or an empty name on
    either side of ':', raises InvalidInput naming the field `model`.
    """
    model_ref, separator, checkpoint_ref = ref.strip().partition(CHECKPOINT_SEPARATOR)
    model_ref, checkpoint_ref = model_ref.strip(), checkpoint_ref.strip()
    if not model_ref and not separator:
        raise InvalidInput(
            "model is empty; name a model as MODEL or MODEL:CHECKPOINT", field="model"
        )
    if not model_ref:
        raise InvalidInput(
            f"model '{ref}' is invalid: the model name before ':' is empty; "
            "use MODEL or MODEL:CHECKPOINT",
            field="model",
        )
    if separator and not checkpoint_ref:
        raise InvalidInput(
            f"model '{ref}' is invalid: the checkpoint name after ':' is empty; "
            f"use '{model_ref}' for the newest checkpoint or '{model_ref}:CHECKPOINT'",
            field="model",
        )
    model = find_model(session, principal, model_ref)
    live = [row for row in model.checkpoints if row.deleted_at is None]
    if not checkpoint_ref:
        return model, (max(live, key=lambda row: row.created_at) if live else None)
    for row in live:
        if row.id == checkpoint_ref or row.name_key == name_key(checkpoint_ref):
            return model, row
    names = ", ".join(row.name for row in live) or "none"
    raise NotFound(
        f"checkpoint '{checkpoint_ref}' of model '{model.name}' not found; "
        f"its checkpoints: {names}",
        field="model",
    )


@dataclass
class ImportRequest:
    path: str
    name: str
    ml_app: MLApp | None = None
    is_base: bool = False
    link: bool = False
    checkpoint: str = DEFAULT_CHECKPOINT
    description: str = ""
    sharing: ModelSharing = ModelSharing.PRIVATE


def import_model(
    session: Session,
    principal: Principal,
    request: ImportRequest,
    models_dir: Path,
    description: str = "model import",
) -> tuple[Model, Checkpoint]:
    """Import files as a new model, or as a new checkpoint of a model of the same name,
    and commit.

    Every check runs before anything is written, and the files are checksummed and
    copied once. The rows are then recorded with run_transaction, which re-runs only
    the database work after a transient failure and raises DatabaseBusy when every
    attempt fails. Copied files are removed again when recording fails, so a failed
    import leaves the hub as it was. An InvalidInput names every invalid field. Only an
    OrgAdmin may import, because the files come from a path on the server.
    `description` names the import in the log of a retry.
    """
    require_server_files_access(principal)
    tenant_id = principal.active_tenant_id
    checks = InputChecks()
    with checks.check():
        name = normalize_name(request.name, field="name")
    with checks.check():
        checkpoint_name = normalize_name(request.checkpoint, field="checkpoint")
    with checks.check():
        inspection = importer.inspect_path(request.path)
        ml_app = request.ml_app or inspection.ml_app
        if ml_app is None:
            raise InvalidInput(
                f"cannot tell which ML App serves architecture '{inspection.architecture}'; "
                "ml_app must name it: text-generation or text-embedding",
                field="ml_app",
            )
        _check_ml_app(inspection, ml_app)
    with checks.check():
        _check_sharing(session, request.sharing)
    checks.raise_failures()
    existing = _model_for_import(session, principal, tenant_id, name, ml_app, checkpoint_name)
    if existing is not None:
        _check_same_architecture(existing, inspection, checkpoint_name)

    new_model_id = new_id()
    checkpoint_id = new_id()
    root = importer.source_root(inspection)
    size, checksum = importer.digest_files(root, inspection.files)
    stored: Path | None = None
    if request.link:
        artifact = str(inspection.source.resolve())
        stats = importer.file_stats(root, inspection.files)
    else:
        folder_model_id = existing.id if existing is not None else new_model_id
        stored = models_dir / "imported" / folder_model_id / checkpoint_id
        artifact = str(importer.store_files(inspection, stored))
        stats = importer.file_stats(stored, inspection.files)

    record = _ImportRecord(
        request=request,
        name=name,
        checkpoint_name=checkpoint_name,
        ml_app=ml_app,
        inspection=inspection,
        new_model_id=new_model_id,
        checkpoint_id=checkpoint_id,
        artifact=artifact,
        size=size,
        checksum=checksum,
        file_stats=stats,
    )
    try:
        return run_transaction(
            session, lambda: _record_import(session, principal, record), description
        )
    except BaseException as error:
        if stored is not None:
            _remove_stored_files(stored, error)
        raise


@dataclass(frozen=True)
class _ImportRecord:
    """The values that an import writes to the database, fixed before the first attempt."""

    request: ImportRequest
    name: str
    checkpoint_name: str
    ml_app: MLApp
    inspection: importer.Inspection
    # The ID of the model when the import creates one.
    new_model_id: str
    checkpoint_id: str
    artifact: str
    size: int
    checksum: str
    file_stats: dict[str, list[int]]


def _record_import(
    session: Session, principal: Principal, record: _ImportRecord
) -> tuple[Model, Checkpoint]:
    """Add the checkpoint, and the model unless it exists, with an audit entry.

    run_transaction may run this again after a rollback, so it looks up the model and
    checks the sharing setting each time, because a concurrent import may have created
    the model in the meantime.
    """
    request = record.request
    tenant_id = principal.active_tenant_id
    _check_sharing(session, request.sharing)
    model = _model_for_import(
        session, principal, tenant_id, record.name, record.ml_app, record.checkpoint_name
    )
    if model is not None:
        _check_same_architecture(model, record.inspection, record.checkpoint_name)
    if model is None:
        model = Model(
            id=record.new_model_id,
            name=record.name,
            name_key=name_key(record.name),
            description=request.description,
            ml_app=record.ml_app,
            architecture=record.inspection.architecture,
            field_of_application=record.inspection.field_of_application,
            owner_id=principal.user_id,
            tenant_id=tenant_id,
            is_base=request.is_base,
            sharing=request.sharing,
            artifact=record.artifact,
        )
        session.add(model)
    files = CheckpointFiles(
        record.artifact,
        record.inspection.format,
        record.size,
        record.checksum,
        linked=request.link,
        architecture=record.inspection.architecture,
        has_chat_template=record.inspection.has_chat_template,
        file_stats=record.file_stats,
        trained_context_length=record.inspection.trained_context_length,
    )
    checkpoint = _add_checkpoint(session, model, record.checkpoint_name, files)
    checkpoint.id = record.checkpoint_id
    audit.record(
        session,
        principal,
        "model.imported",
        "model",
        model.id,
        model.name,
        tenant_id,
        checkpoint=record.checkpoint_name,
        size_bytes=record.size,
        checksum=record.checksum,
        linked=request.link,
    )
    return model, checkpoint


def _check_same_architecture(
    model: Model, inspection: importer.Inspection, checkpoint_name: str
) -> None:
    """Raise Conflict when the new checkpoint's architecture differs from the one that
    the model's checkpoints recorded, because its endpoints were set up for that one.

    Checkpoints imported before Berth recorded architectures are not compared."""
    live = [row for row in model.checkpoints if row.deleted_at is None and row.architecture]
    if not live:
        return
    newest = max(live, key=lambda row: row.created_at)
    if newest.architecture == inspection.architecture:
        return
    raise Conflict(
        f"checkpoint '{checkpoint_name}' would be a {inspection.architecture} model, but "
        f"model '{model.name}' is {newest.architecture} (checkpoint '{newest.name}'); "
        "import the files as a model of their own under another name",
        field="checkpoint",
    )


def _remove_stored_files(stored: Path, error: BaseException) -> None:
    """Remove the files that a failed import copied, unless its commit may have succeeded."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        # NOTE: the connection was lost, maybe during the commit, so the import may have
        # been saved and its files are kept. If it was not, nothing uses them.
        logger.warning(
            "model import failed because the database connection was lost; keeping the "
            "copied files at %s, which may belong to a saved import",
            stored,
        )
        return
    shutil.rmtree(stored, ignore_errors=True)


def _model_for_import(
    session: Session,
    principal: Principal,
    tenant_id: str,
    name: str,
    ml_app: MLApp,
    checkpoint_name: str,
) -> Model | None:
    """Return the existing model that a new checkpoint joins, or None for a new model."""
    if name_key(name) in _BUILTIN_NAMES:
        raise Conflict(f"'{name}' is the name of a built-in model; choose another", field="name")
    model = session.scalar(
        select(Model).where(
            Model.tenant_id == tenant_id,
            Model.name_key == name_key(name),
            Model.deleted_at.is_(None),
        )
    )
    if model is None:
        return None
    if not principal.can_manage_model(model):
        raise Conflict(
            f"a model named '{name}' already exists in tenant '{principal.tenant_name}' "
            "and belongs to someone else; choose another name",
            field="name",
        )
    if model.ml_app != ml_app:
        raise Conflict(
            f"model '{name}' serves {model.ml_app.display_name}; a checkpoint for "
            f"{ml_app.display_name} needs a model of its own",
            field="ml_app",
        )
    if any(
        row.name_key == name_key(checkpoint_name) and row.deleted_at is None
        for row in model.checkpoints
    ):
        raise Conflict(
            f"model '{name}' already has a checkpoint named '{checkpoint_name}'; "
            "checkpoint needs a name that the model does not have yet",
            field="checkpoint",
        )
    return model
