"""Projects: folders of endpoints inside one tenant."""

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from berth.auth import Principal
from berth.db.models import Endpoint, Project, utcnow
from berth.errors import Conflict, Forbidden, NotFound
from berth.names import name_key, normalize_name
from berth.service import audit
from berth.service.common import lock_row, looks_like_id, new_id

# Every tenant gets a project of this name. Endpoint creation in the REST API and CLI
# uses it when no project is given, so it cannot be renamed or deleted.
DEFAULT_PROJECT = "default"


def find_project(
    session: Session, principal: Principal, ref: str, *, lock: bool = False
) -> Project:
    """Find a project of the active tenant by name or ID.

    With `lock`, the row stays share-locked until the transaction ends, so that on
    PostgreSQL a concurrent delete_project waits for it, or it waits for the delete and
    then finds no project. SQLite ignores the lock; there the create checks the project
    again once it holds the write lock.
    """
    query = select(Project).where(
        Project.tenant_id == principal.active_tenant_id, Project.deleted_at.is_(None)
    )
    if looks_like_id(ref):
        query = query.where(Project.id == ref.lower())
    else:
        query = query.where(Project.name_key == name_key(ref))
    if lock:
        query = query.with_for_update(read=True)
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


def _check_unique(
    session: Session, principal: Principal, name: str, excluding: str | None = None
) -> None:
    query = select(Project.name).where(
        Project.tenant_id == principal.active_tenant_id,
        Project.name_key == name_key(name),
        Project.deleted_at.is_(None),
    )
    if excluding is not None:
        query = query.where(Project.id != excluding)
    existing = session.scalar(query)
    if existing is None:
        return
    message = f"a project named '{existing}' already exists in tenant '{principal.tenant_name}'"
    if existing != name:
        message += f", and project names ignore case, so '{name}' is taken too"
    raise Conflict(message, field="name")


def create_project(session: Session, principal: Principal, name: str, description: str) -> Project:
    name = normalize_name(name, field="name")
    _check_unique(session, principal, name)
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


def is_default_project(project: Project) -> bool:
    return project.name_key == DEFAULT_PROJECT


def can_manage(principal: Principal, project: Project) -> bool:
    """Tell whether the caller may rename, describe or delete the project."""
    return project.owner_id == principal.user_id or principal.is_tenant_admin(project.tenant_id)


def _require_manage(principal: Principal, project: Project, action: str) -> None:
    if can_manage(principal, project):
        return
    raise Forbidden(
        f"you may not {action} project '{project.name}': only its owner, a TenantAdmin of "
        "its tenant or an OrgAdmin may"
    )


def update_project(
    session: Session,
    principal: Principal,
    project: Project,
    name: str | None,
    description: str | None,
    expected_version: int | None = None,
) -> Project:
    """Rename the project and/or change its description; None leaves a field as it is.

    `expected_version` is the version the caller last read; a stale one raises Conflict
    and changes nothing. A change raises the version by one. A request that changes
    nothing leaves it as it is.
    """
    _require_manage(principal, project, "change")
    # A rename or delete runs after any concurrent change of the same project, and the
    # version check compares with the latest version.
    lock_row(session, project, Project.version)
    if expected_version is not None and expected_version != project.version:
        raise Conflict(
            f"project '{project.name}' was changed by someone else (version "
            f"{project.version}, you sent {expected_version}); read it again and retry",
            field="version",
            current_version=project.version,
        )
    details: dict[str, str] = {}
    if name is not None:
        name = normalize_name(name, field="name")
        # Even a change of letter case is refused for the default project, whose name
        # the docs and the CLI give as it is.
        if name != project.name and is_default_project(project):
            raise Conflict(
                f"project '{project.name}' cannot be renamed: new endpoints go into it when "
                "no project is given; create another project with `berth project create`",
                field="name",
            )
        _check_unique(session, principal, name, excluding=project.id)
        if name != project.name:
            details["old_name"] = project.name
            project.name = name
            project.name_key = name_key(name)
    if description is not None and description != project.description:
        details["old_description"] = project.description
        project.description = description
    if details:
        project.version += 1
        audit.record(
            session,
            principal,
            "project.updated",
            "project",
            project.id,
            project.name,
            project.tenant_id,
            **details,
        )
    return project


def count_endpoints(session: Session, project: Project) -> int:
    """Count the project's endpoints in any state, except those marked for deletion."""
    query = (
        select(func.count())
        .select_from(Endpoint)
        .where(Endpoint.project_id == project.id, Endpoint.deleted_at.is_(None))
    )
    return session.scalar(query) or 0


def delete_project(session: Session, principal: Principal, project: Project) -> None:
    """Mark an empty project deleted, which frees its name in the tenant.

    Endpoints already marked for deletion do not count: they keep their project row,
    which stays in the database, while the reconciler removes their instances.
    """
    _require_manage(principal, project, "delete")
    if is_default_project(project):
        raise Conflict(
            f"project '{project.name}' cannot be deleted: new endpoints go into it when no "
            "project is given",
            field="project",
        )
    # A rename or delete runs after any concurrent change of the same project.
    lock_row(session, project, Project.version)
    endpoints = count_endpoints(session, project)
    if endpoints:
        noun = "endpoint" if endpoints == 1 else "endpoints"
        raise Conflict(
            f"project '{project.name}' still contains {endpoints} {noun}, stopped ones "
            f"included; delete them first (`berth endpoint list --project {project.name}` "
            "lists them)",
            field="project",
            endpoints=endpoints,
        )
    project.deleted_at = utcnow()
    audit.record(
        session,
        principal,
        "project.deleted",
        "project",
        project.id,
        project.name,
        project.tenant_id,
    )
