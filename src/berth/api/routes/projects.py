"""Projects of the active tenant."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from berth.api.convert import project_out
from berth.api.deps import PrincipalDep, SessionDep, apply_change
from berth.api.schemas import Page, ProjectCreate, ProjectOut, ProjectUpdate
from berth.api.strict_json import StrictJSONRoute
from berth.db.models import Project
from berth.service import projects as service
from berth.service.common import MAX_OFFSET, MAX_PAGE_SIZE

router = APIRouter(prefix="/projects", tags=["projects"], route_class=StrictJSONRoute)


# FastAPI runs a route's dependencies before it validates the body, so a route that
# lists this one returns 404 for an unknown project before 422 for an invalid body.
def _require_project(project: str, session: SessionDep, principal: PrincipalDep) -> None:
    service.find_project(session, principal, project)


@router.get("", response_model=Page[ProjectOut])
def list_projects(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[ProjectOut]:
    """List the projects of the active tenant."""
    rows, total = service.list_projects(session, principal, limit, offset)
    return Page(items=[project_out(row) for row in rows], total=total, limit=limit, offset=offset)


@router.post("", response_model=ProjectOut, status_code=status.HTTP_201_CREATED)
def create_project(
    body: ProjectCreate, session: SessionDep, principal: PrincipalDep, request: Request
) -> ProjectOut:
    """Create a project in the active tenant."""
    project = apply_change(
        session,
        request,
        lambda: service.create_project(session, principal, body.name, body.description),
    )
    return project_out(project)


@router.get("/{project}", response_model=ProjectOut)
def get_project(project: str, session: SessionDep, principal: PrincipalDep) -> ProjectOut:
    """Show one project, named by name or ID."""
    return project_out(service.find_project(session, principal, project))


@router.patch("/{project}", response_model=ProjectOut, dependencies=[Depends(_require_project)])
def update_project(
    project: str,
    body: ProjectUpdate,
    session: SessionDep,
    principal: PrincipalDep,
    request: Request,
) -> ProjectOut:
    """Rename a project or change its description; omitted fields stay as they are.

    With `version`, the change applies only if the project is still at that version."""

    def update() -> Project:
        row = service.find_project(session, principal, project)
        return service.update_project(
            session, principal, row, body.name, body.description, body.version
        )

    return project_out(apply_change(session, request, update))


@router.delete("/{project}", status_code=status.HTTP_204_NO_CONTENT)
def delete_project(
    project: str, session: SessionDep, principal: PrincipalDep, request: Request
) -> None:
    """Delete a project that contains no endpoints; the `default` project stays."""

    def delete() -> None:
        row = service.find_project(session, principal, project)
        service.delete_project(session, principal, row)

    apply_change(session, request, delete)
