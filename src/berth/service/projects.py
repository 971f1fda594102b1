"""Projects: folders of endpoints inside one tenant."""

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from berth.auth import Principal
from berth.db.models import Project
from berth.errors import Conflict, NotFound
from berth.names import name_key, normalize_name
from berth.service import audit
from berth.service.common import looks_like_id, new_id


def find_project(session: Session, principal: Principal, ref: str) -> Project:
    """Find a project of the active tenant by name or ID."""
    query = select(Project).where(
        Project.tenant_id == principal.active_tenant_id, Project.deleted_at.is_(None)
    )
    if looks_like_id(ref):
        query = query.where(Project.id == ref.lower())
    else:
        query = query.where(Project.name_key == name_key(ref))
    project = session.scalar(query)
    if project is None:
        raise NotFound(
            f"project '{ref}' not found in tenant '{principal.tenant_name}'; "
            "`berth project list` shows the projects",
            field="project",
        )
    return project


def list_projects(
    session: Session, principal: Principal, limit: int, offset: int
) -> tuple[list[Project], int]:
    condition = (Project.tenant_id == principal.active_tenant_id) & Project.deleted_at.is_(None)
    total = session.scalar(select(func.count()).select_from(Project).where(condition)) or 0
    rows = session.scalars(
        select(Project).where(condition).order_by(Project.created_at).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def create_project(session: Session, principal: Principal, name: str, description: str) -> Project:
    name = normalize_name(name, field="name")
    duplicate = session.scalar(
        select(Project.id).where(
            Project.tenant_id == principal.active_tenant_id,
            Project.name_key == name_key(name),
            Project.deleted_at.is_(None),
        )
    )
    if duplicate is not None:
        raise Conflict(
            f"a project named '{name}' already exists in tenant '{principal.tenant_name}'",
            field="name",
        )
    project = Project(
        id=new_id(),
        tenant_id=principal.active_tenant_id,
        name=name,
        name_key=name_key(name),
        description=description,
        owner_id=principal.user_id,
    )
    session.add(project)
    audit.record(
        session, principal, "project.created", "project", project.id, name, project.tenant_id
    )
    return project
