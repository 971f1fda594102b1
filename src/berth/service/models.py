"""Model Hub queries."""

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from berth.auth import Principal
from berth.db.models import Model
from berth.errors import NotFound
from berth.names import name_key
from berth.service.common import looks_like_id
from berth.states import MLApp


@dataclass
class ModelFilter:
    ml_app: MLApp | None = None
    architecture: str | None = None
    field_of_application: str | None = None
    is_base: bool | None = None
    search: str | None = None


def _visible(principal: Principal):  # type: ignore[no-untyped-def]
    # NOTE: models have no sharing settings yet, so every model is visible to every
    # signed-in user: built-in ones, and imported ones of any tenant.
    return Model.id.is_not(None)


def find_model(session: Session, principal: Principal, ref: str) -> Model:
    query = select(Model).where(_visible(principal))
    if looks_like_id(ref):
        query = query.where(Model.id == ref)
    else:
        query = query.where(Model.name_key == name_key(ref))
    model = session.scalar(query)
    if model is None:
        raise NotFound(
            f"model '{ref}' not found in the Model Hub; `berth model list` shows the models",
            field="model",
        )
    return model


def list_models(
    session: Session, principal: Principal, filters: ModelFilter, limit: int, offset: int
) -> tuple[list[Model], int]:
    conditions = [_visible(principal)]
    if filters.ml_app is not None:
        conditions.append(Model.ml_app == filters.ml_app)
    if filters.architecture:
        conditions.append(func.lower(Model.architecture) == filters.architecture.lower())
    if filters.field_of_application:
        conditions.append(
            func.lower(Model.field_of_application) == filters.field_of_application.lower()
        )
    if filters.is_base is not None:
        conditions.append(Model.is_base.is_(filters.is_base))
    if filters.search:
        pattern = f"%{filters.search.strip().lower()}%"
        conditions.append(
            or_(
                func.lower(Model.name).like(pattern),
                func.lower(Model.description).like(pattern),
                func.lower(Model.architecture).like(pattern),
            )
        )
    total = session.scalar(select(func.count()).select_from(Model).where(*conditions)) or 0
    rows = session.scalars(
        select(Model).where(*conditions).order_by(Model.name_key).limit(limit).offset(offset)
    ).all()
    return list(rows), total
