"""The Model Hub."""

from typing import Annotated

from fastapi import APIRouter, Query

from berth.api.convert import model_out
from berth.api.deps import PrincipalDep, SessionDep
from berth.api.schemas import ModelOut, Page
from berth.errors import InvalidInput
from berth.service import models as service
from berth.service.common import MAX_PAGE_SIZE
from berth.states import MLApp

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=Page[ModelOut])
def list_models(
    session: SessionDep,
    principal: PrincipalDep,
    ml_app: Annotated[str | None, Query(description="ML App identifier or name")] = None,
    architecture: str | None = None,
    field_of_application: str | None = None,
    base: Annotated[bool | None, Query(description="only base models, or only others")] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[ModelOut]:
    """List models of the hub, filtered and paginated; `total` counts every match."""
    app = None
    if ml_app:
        try:
            app = MLApp.parse(ml_app)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="ml_app") from exc
    filters = service.ModelFilter(
        ml_app=app,
        architecture=architecture,
        field_of_application=field_of_application,
        is_base=base,
        search=search,
    )
    rows, total = service.list_models(session, principal, filters, limit, offset)
    return Page(items=[model_out(row) for row in rows], total=total, limit=limit, offset=offset)


@router.get("/{model}", response_model=ModelOut)
def get_model(model: str, session: SessionDep, principal: PrincipalDep) -> ModelOut:
    """Show one model, named by name or ID."""
    return model_out(service.find_model(session, principal, model))
