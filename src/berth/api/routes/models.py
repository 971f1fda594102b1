"""The Model Hub."""

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from berth.api.convert import model_out
from berth.api.deps import (
    PrincipalDep,
    SessionDep,
    SettingsDep,
    apply_change,
    describe_request,
    notify_change,
)
from berth.api.schemas import ModelCreate, ModelImport, ModelOut, ModelUpdate, Page
from berth.api.strict_json import StrictJSONRoute
from berth.db.models import Model
from berth.errors import InvalidInput, NotFound
from berth.service import models as service
from berth.service.common import MAX_OFFSET, MAX_PAGE_SIZE
from berth.states import MLApp

router = APIRouter(prefix="/models", tags=["models"], route_class=StrictJSONRoute)


def _parse_ml_app(text: str, field: str) -> MLApp:
    try:
        return MLApp.parse(text)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from exc


# Listed as a route dependency so that a change to an unknown model gets 404 before an
# invalid body gets 422, because FastAPI (0.165) runs dependencies before it validates
# the body.
def _require_model(model: str, session: SessionDep, principal: PrincipalDep) -> None:
    service.find_model(session, principal, model)


@router.get("", response_model=Page[ModelOut])
def list_models(
    session: SessionDep,
    principal: PrincipalDep,
    group: Annotated[
        service.ModelGroup,
        Query(description="mine, shared (with the active tenant), berth (built-in) or all"),
    ] = service.ModelGroup.ALL,
    ml_app: Annotated[str | None, Query(description="ML App identifier or name")] = None,
    architecture: str | None = None,
    field_of_application: str | None = None,
    owner: Annotated[str | None, Query(description="owner's user name, or 'berth'")] = None,
    base: Annotated[bool | None, Query(description="only base models, or only others")] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[ModelOut]:
    """List the models the caller can see, filtered and paginated; `total` counts every
    match, on every page."""
    filters = service.ModelFilter(
        group=group,
        ml_app=_parse_ml_app(ml_app, "ml_app") if ml_app else None,
        architecture=architecture,
        field_of_application=field_of_application,
        owner=owner,
        is_base=base,
        search=search,
    )
    rows, total = service.list_models(session, principal, filters, limit, offset)
    return Page(items=[model_out(row) for row in rows], total=total, limit=limit, offset=offset)


@router.post("", response_model=ModelOut, status_code=status.HTTP_201_CREATED)
def register_model(
    body: ModelCreate, request: Request, session: SessionDep, principal: PrincipalDep
) -> ModelOut:
    """Add a model whose files are already on the server to the hub of the active tenant.

    Files on the server need an OrgAdmin (403 for others). An Echo model needs no files."""
    new = service.NewModel(
        name=body.name,
        ml_app=_parse_ml_app(body.ml_app, "ml_app"),
        path=body.path,
        architecture=body.architecture,
        field_of_application=body.field_of_application,
        description=body.description,
        is_base=body.is_base,
        sharing=body.sharing,
    )
    # A re-run after a transient database failure reads and checksums the files again.
    model = apply_change(session, request, lambda: service.register_model(session, principal, new))
    return model_out(model)


@router.post("/import", response_model=ModelOut, status_code=status.HTTP_201_CREATED)
def import_model(
    body: ModelImport,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> ModelOut:
    """Import model files into the hub of the active tenant: a Hugging Face folder, a
    folder in the Hugging Face cache layout or a GGUF file. Architecture and ML App are
    detected, the files are checked, measured and copied (or linked with `link`).
    OrgAdmin only (403 for others), because the files are read from the server."""
    import_request = service.ImportRequest(
        path=body.path,
        name=body.name,
        ml_app=_parse_ml_app(body.ml_app, "ml_app") if body.ml_app else None,
        is_base=body.is_base,
        link=body.link,
        checkpoint=body.checkpoint,
        description=body.description,
        sharing=body.sharing,
    )
    # The import commits itself, because after a transient failure only its database
    # work may run again, not the copy of the files.
    model, _checkpoint = service.import_model(
        session, principal, import_request, settings.models_dir, describe_request(request)
    )
    notify_change(request)
    return model_out(model)


@router.get("/{model}", response_model=ModelOut)
def get_model(model: str, session: SessionDep, principal: PrincipalDep) -> ModelOut:
    """Show one model, named by name or ID."""
    return model_out(service.find_model(session, principal, model))


@router.patch("/{model}", response_model=ModelOut, dependencies=[Depends(_require_model)])
def update_model(
    model: str, body: ModelUpdate, request: Request, session: SessionDep, principal: PrincipalDep
) -> ModelOut:
    """Change a model's description or sharing."""

    def update() -> Model:
        row = service.find_model(session, principal, model)
        return service.update_model(session, principal, row, body.description, body.sharing)

    return model_out(apply_change(session, request, update))


@router.delete("/{model}", status_code=status.HTTP_204_NO_CONTENT)
def delete_model(
    model: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> None:
    """Remove a model from the hub and the files that import copied for it; rejected
    with 409 while an endpoint uses it. Linked files stay where they are."""

    def delete() -> list[Path]:
        row = service.find_model(session, principal, model)
        return service.delete_model(session, principal, row, settings.models_dir)

    # The files go only after the commit, so a failed deletion keeps them.
    service.remove_copied_files(apply_change(session, request, delete))


@router.delete("/{model}/checkpoints/{checkpoint}", status_code=status.HTTP_204_NO_CONTENT)
def delete_checkpoint(
    model: str,
    checkpoint: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> None:
    """Remove one checkpoint of a model and the files that import copied for it.

    Rejected with 409 while an endpoint is set to the checkpoint or still has an
    instance on it, and for the model's only checkpoint. Linked files stay."""

    def delete() -> list[Path]:
        row, found = service.find_checkpoint(
            session, principal, f"{model}{service.CHECKPOINT_SEPARATOR}{checkpoint}"
        )
        if found is None:
            raise NotFound(f"checkpoint '{checkpoint}' of model '{model}' not found")
        return service.delete_checkpoint(session, principal, row, found, settings.models_dir)

    service.remove_copied_files(apply_change(session, request, delete))
