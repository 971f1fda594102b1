"""Projects of the active tenant."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from berth.api.convert import project_out
from berth.api.deps import PrincipalDep, SessionDep, apply_change
from berth.api.schemas import Page, ProjectCreate, ProjectOut
from berth.api.strict_json import StrictJSONRoute
from berth.service import projects as service
from berth.service.common import MAX_OFFSET, MAX_PAGE_SIZE

router = APIRouter(prefix="/projects", tags=["projects"], route_class=StrictJSONRoute)


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
