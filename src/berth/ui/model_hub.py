"""The Model Hub screen, and the Model Hub browser of the model picker.

Both list the models that the signed-in user can see, filtered by the same query
parameters. The screen adds pages, the import dialog, and deleting models and checkpoints.
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from berth.api.convert import model_out
from berth.api.schemas import ModelOut
from berth.auth import Principal
from berth.db.models import Model
from berth.errors import InvalidInput
from berth.service import models, organization
from berth.service.common import MAX_OFFSET, MAX_PAGE_SIZE
from berth.states import MLApp, ModelSharing
from berth.ui.views import chrome, render, signed_in

PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
# Values of the "Base model" filter, mapped to ModelFilter.is_base.
BASE_CHOICES = {"": None, "base": True, "not-base": False}
# Query parameters of the filter form, in the order that links repeat them.
FILTER_PARAMS = ("field_of_application", "ml_app", "architecture", "owner", "base", "search")
# The Echo ML App serves no files, so there is nothing to import for it.
IMPORTABLE_ML_APPS = [app for app in MLApp if app != MLApp.ECHO]


def parse_model_filter(params: QueryParams) -> models.ModelFilter:
    """Read the Model Hub filters from query parameters. An empty value filters nothing."""
    ml_app_text = params.get("ml_app") or None
    try:
        ml_app = MLApp.parse(ml_app_text) if ml_app_text else None
    except ValueError as exc:
        raise InvalidInput(str(exc), field="ml_app") from exc
    base_text = params.get("base") or ""
    if base_text not in BASE_CHOICES:
        raise InvalidInput(
            f"base filter '{base_text}' is invalid; use 'base', 'not-base' or leave it empty",
            field="base",
        )
    return models.ModelFilter(
        ml_app=ml_app,
        architecture=params.get("architecture") or None,
        field_of_application=params.get("field_of_application") or None,
        owner=params.get("owner") or None,
        is_base=BASE_CHOICES[base_text],
        search=params.get("search") or None,
    )


# The Model Hub browser of the model picker.


@signed_in
def model_hub_fragment(request: Request, session: Session, principal: Principal) -> Response:
    """List the Model Hub's models that match the browser's filters."""
    query = parse_model_filter(request.query_params)
    rows, total = models.list_models(session, principal, query, MAX_PAGE_SIZE, 0)
    context = {"models": [model_out(row) for row in rows], "total": total}
    return render(request, "_model_hub_results.html", context)


# The Model Hub screen.


@dataclass
class ModelCard:
    """A model as the Model Hub screen shows it, with what the viewer may do to it."""

    out: ModelOut
    can_delete: bool
    sharing_label: str
    # The checkpoint that an endpoint gets when it names only the model, which is the newest.
    default_checkpoint_id: str | None
    # Number of files of each checkpoint by ID, or None for checkpoints imported before
    # Berth recorded their files, and for built-in ones.
    file_counts: dict[str, int | None]

    @property
    def dialog_data(self) -> dict[str, Any]:
        return {
            "id": self.out.id,
            "name": self.out.name,
            "checkpoint_count": len(self.out.checkpoints),
        }

    @property
    def can_delete_checkpoints(self) -> bool:
        """Tell whether the viewer may delete single checkpoints. The API rejects deleting
        the only checkpoint, which goes with the model instead."""
        return self.can_delete and len(self.out.checkpoints) > 1


@dataclass
class PageLinks:
    """Position of the shown page in the filtered list, and the links to its neighbours."""

    number: int
    count: int
    first_index: int
    last_index: int
    previous_url: str | None
    next_url: str | None


def _sharing_label(model: Model, principal: Principal) -> str:
    if model.is_builtin:
        return "Everyone (built into Berth)"
    if model.sharing == ModelSharing.ALL_TENANTS:
        return "All tenants"
    if model.sharing == ModelSharing.TENANT:
        # Lists show tenant-shared models only inside their own tenant, the active one.
        return f"All users of {principal.tenant_name}"
    return "Only its owner"


def _model_card(model: Model, principal: Principal) -> ModelCard:
    out = model_out(model)
    # Checkpoints come oldest first, so the last one is the newest.
    default = out.checkpoints[-1].id if out.checkpoints else None
    file_counts = {
        row.id: len(row.file_stats) if row.file_stats is not None else None
        for row in model.checkpoints
    }
    return ModelCard(
        out=out,
        can_delete=principal.can_manage_model(model),
        sharing_label=_sharing_label(model, principal),
        default_checkpoint_id=default,
        file_counts=file_counts,
    )


def _positive_int(params: QueryParams, name: str, default: int) -> int:
    text = params.get(name) or ""
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(
            f"{name} '{text}' is invalid; use a whole number of 1 or more", field=name
        )
    return int(text)


def _page_size(params: QueryParams) -> int:
    size = _positive_int(params, "per_page", DEFAULT_PAGE_SIZE)
    if size not in PAGE_SIZES:
        choices = ", ".join(str(choice) for choice in PAGE_SIZES)
        raise InvalidInput(f"per_page {size} is invalid; use one of {choices}", field="per_page")
    return size


def _list_url(prefix: str, values: dict[str, str], page: int) -> str:
    query = {name: value for name, value in values.items() if value}
    if page > 1:
        query["page"] = str(page)
    return f"{prefix}/models" + (f"?{urlencode(query)}" if query else "")


def _model_list(request: Request, session: Session, principal: Principal) -> dict[str, Any]:
    """Collect one page of the filtered model list, with its total and page links."""
    params = request.query_params
    filters = parse_model_filter(params)
    size = _page_size(params)
    number = _positive_int(params, "page", 1)
    if (number - 1) * size > MAX_OFFSET:
        raise InvalidInput(f"page {number} is out of range", field="page")

    rows, total = models.list_models(session, principal, filters, size, (number - 1) * size)
    count = max(1, -(-total // size))
    if number > count:
        # A link to a page that the list no longer reaches (models were deleted since)
        # shows the last page instead of an empty one.
        number = count
        rows, total = models.list_models(session, principal, filters, size, (number - 1) * size)

    values = {name: params.get(name) or "" for name in FILTER_PARAMS}
    if size != DEFAULT_PAGE_SIZE:
        values["per_page"] = str(size)
    prefix = request.app.state.prefix
    first_index = (number - 1) * size + 1 if rows else 0
    pages = PageLinks(
        number=number,
        count=count,
        first_index=first_index,
        last_index=first_index + len(rows) - 1 if rows else 0,
        previous_url=_list_url(prefix, values, number - 1) if number > 1 else None,
        next_url=_list_url(prefix, values, number + 1) if number < count else None,
    )
    return {
        "cards": [_model_card(row, principal) for row in rows],
        "total": total,
        "pages": pages,
        "filtered": any(params.get(name) for name in FILTER_PARAMS),
    }


def _filter_choices(principal: Principal, session: Session) -> dict[str, list[tuple[str, str]]]:
    """List the (value, label) options of each filter, from the models the user can see."""
    facets = models.model_facets(session, principal)
    owners = [("berth", "Berth (built-in)")] if facets.has_builtin else []
    owners += [(name, name) for name in facets.owners]
    return {
        "field_of_application": [(value, value) for value in facets.fields_of_application],
        "ml_app": [(app.value, app.display_name) for app in facets.ml_apps],
        "architecture": [(value, value) for value in facets.architectures],
        "owner": owners,
        "base": [("base", "Only base models"), ("not-base", "Only models that are not base")],
    }


@signed_in
def model_hub_page(request: Request, session: Session, principal: Principal) -> Response:
    context = chrome(session, principal, section="models")
    context.update(_model_list(request, session, principal))
    context.update(
        choices=_filter_choices(principal, session),
        values={name: request.query_params.get(name) or "" for name in FILTER_PARAMS},
        page_sizes=PAGE_SIZES,
        default_page_size=DEFAULT_PAGE_SIZE,
        page_size=_page_size(request.query_params),
        # Importing reads a path on the server, which only an OrgAdmin may, as in the API.
        can_import=principal.is_org_admin,
        import_ml_apps=IMPORTABLE_ML_APPS,
        org_sharing=organization.get_settings(session).share_with_all_tenants,
    )
    return render(request, "models.html", context)


@signed_in
def model_list_fragment(request: Request, session: Session, principal: Principal) -> Response:
    """Render the filtered model list of the Model Hub screen, for the page's script."""
    return render(request, "_model_list.html", _model_list(request, session, principal))
