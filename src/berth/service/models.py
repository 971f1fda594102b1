"""The Model Hub: queries in the guide's four groups, registration and sharing.

A model is visible to its owner, to the members of its tenant when shared with the
tenant, to everyone when shared with all tenants, and (built-in models) to everyone.
Lists apply the same rule to OrgAdmins, so the hub of the active tenant stays readable;
an OrgAdmin may still open any model by ID.
"""

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from berth.auth import Principal
from berth.db.models import Endpoint, Model, User, utcnow
from berth.errors import Conflict, Forbidden, InvalidInput, NotFound
from berth.hub.builtin import BUILTIN_MODELS
from berth.names import name_key, normalize_name
from berth.service import audit, organization
from berth.service.common import looks_like_id, new_id
from berth.states import MLApp, ModelSharing

_BUILTIN_NAMES = {name_key(builtin.name) for builtin in BUILTIN_MODELS}


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
            Model.owner_id == principal.user_id,
            Model.sharing == ModelSharing.ALL_TENANTS,
            and_(Model.sharing == ModelSharing.TENANT, Model.tenant_id == principal.tenant_id),
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
        model = session.get(Model, ref)
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


def register_model(session: Session, principal: Principal, new: NewModel) -> Model:
    """Add a model whose files are already on this machine to the hub."""
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
    if new.ml_app != MLApp.ECHO:
        path = Path(new.path).expanduser()
        if not new.path or not path.exists():
            raise InvalidInput(
                f"model path '{new.path}' does not exist on the Berth server", field="path"
            )
        artifact = str(path.resolve())
    else:
        artifact = "builtin:echo"
    _check_sharing(session, new.sharing)

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
        artifact=artifact,
    )
    session.add(model)
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


def _check_sharing(session: Session, sharing: ModelSharing) -> None:
    if sharing == ModelSharing.ALL_TENANTS and not (
        organization.get_settings(session).share_with_all_tenants
    ):
        raise InvalidInput(
            "sharing with all tenants is turned off for this organization; "
            "an OrgAdmin can turn it on, until then share the model with your tenant",
            field="sharing",
        )


def update_model(
    session: Session,
    principal: Principal,
    model: Model,
    description: str | None,
    sharing: ModelSharing | None,
) -> Model:
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


def delete_model(session: Session, principal: Principal, model: Model) -> None:
    if not principal.can_manage_model(model):
        raise Forbidden(
            f"you may not delete model '{model.name}': only its owner, a TenantAdmin of "
            "its tenant or an OrgAdmin may"
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
    model.deleted_at = utcnow()
    audit.record(
        session, principal, "model.deleted", "model", model.id, model.name, model.tenant_id
    )
