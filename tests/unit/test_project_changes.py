"""Renaming and deleting projects: unique names, the `default` project, endpoints that
block a delete, who may change a project, and the audit entries."""

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from berth.api.schemas import EndpointUpdate, ProjectUpdate
from berth.auth import Principal, authenticate
from berth.db.engine import Database
from berth.db.models import AuditEntry, Endpoint
from berth.errors import Conflict, Forbidden, InvalidInput, NotFound
from berth.service import endpoints, projects, tenants, users
from berth.states import DesiredState, Role
from tests.unit.conftest import UNIT_ADMIN_KEY

LIMITS = endpoints.Limits(capacity=8, max_instances_per_endpoint=4)


def _admin(session: Session) -> Principal:
    return authenticate(session, UNIT_ADMIN_KEY, None)


def _create_endpoint(session: Session, principal: Principal, project: str, name: str) -> Endpoint:
    endpoint, _key = endpoints.create_endpoint(
        session, principal, LIMITS, project_ref=project, name=name, model_ref="echo", instances=1
    )
    return endpoint


def test_rename_and_describe(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        project = projects.create_project(session, admin, "research", "old text")
        projects.update_project(session, admin, project, "Labs", "new text")

    with database.session() as session:
        admin = _admin(session)
        found = projects.find_project(session, admin, "labs")
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "project.updated")
        ).all()
        with pytest.raises(NotFound):
            projects.find_project(session, admin, "research")

        assert found.name == "Labs"
        assert found.description == "new text"
        assert len(entries) == 1
        assert entries[0].resource_name == "Labs"
        assert entries[0].details == {"old_name": "research", "old_description": "old text"}


def test_rename_to_taken_name(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        projects.create_project(session, admin, "research", "")
        other = projects.create_project(session, admin, "labs", "")
        with pytest.raises(Conflict) as raised:
            projects.update_project(session, admin, other, "Research", None)

    assert raised.value.field == "name"
    assert "a project named 'research' already exists" in raised.value.message
    assert "so 'Research' is taken too" in raised.value.message


def test_rename_checks_name_rules(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        project = projects.create_project(session, admin, "research", "")
        with pytest.raises(InvalidInput) as raised:
            projects.update_project(session, admin, project, "no spaces allowed?", None)

    assert raised.value.field == "name"


def test_rename_same_name_other_case(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        project = projects.create_project(session, admin, "research", "")
        projects.update_project(session, admin, project, "Research", None)

        assert project.name == "Research"


def test_unchanged_update_writes_no_audit(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        project = projects.create_project(session, admin, "research", "text")
        projects.update_project(session, admin, project, "research", "text")
        session.flush()
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "project.updated")
        ).all()

    assert entries == []


def test_default_project_keeps_name(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        default = projects.find_project(session, admin, "default")
        with pytest.raises(Conflict) as raised:
            projects.update_project(session, admin, default, "main", None)
        with pytest.raises(Conflict):
            projects.update_project(session, admin, default, "Default", None)
        projects.update_project(session, admin, default, "default", "endpoints of the team")

        assert "project 'default' cannot be renamed" in raised.value.message
        assert default.name == "default"
        assert default.description == "endpoints of the team"


def test_default_project_not_deleted(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        default = projects.find_project(session, admin, "default")
        with pytest.raises(Conflict) as raised:
            projects.delete_project(session, admin, default)

    assert "project 'default' cannot be deleted" in raised.value.message


def test_delete_empty_project(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        project = projects.create_project(session, admin, "research", "")
        projects.delete_project(session, admin, project)

    with database.session() as session:
        admin = _admin(session)
        with pytest.raises(NotFound):
            projects.find_project(session, admin, "research")
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "project.deleted")
        ).all()
        # The name is free again.
        projects.create_project(session, admin, "research", "")

        assert [entry.resource_name for entry in entries] == ["research"]


def test_delete_blocked_by_endpoints(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        project = projects.create_project(session, admin, "research", "")
        _create_endpoint(session, admin, "research", "chat")
        stopped = _create_endpoint(session, admin, "research", "old-chat")
        stopped.desired_state = DesiredState.STOPPED
        session.flush()
        with pytest.raises(Conflict) as raised:
            projects.delete_project(session, admin, project)

    assert raised.value.details == {"endpoints": 2}
    assert "project 'research' still contains 2 endpoints" in raised.value.message
    assert "stopped ones included" in raised.value.message
    assert "`berth endpoint list --project research`" in raised.value.message


def test_delete_after_endpoints_deleted(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        project = projects.create_project(session, admin, "research", "")
        endpoint = _create_endpoint(session, admin, "research", "chat")
        session.flush()
        # An endpoint marked for deletion no longer blocks deleting its project.
        endpoints.delete_endpoint(session, admin, endpoint)
        projects.delete_project(session, admin, project)

        assert project.deleted_at is not None


def test_member_changes_only_own_project(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        tenant = tenants.find_tenant(session, admin, "default")
        ada, ada_key = users.create_user(
            session, admin, users.NewUser(username="ada", create_key=True)
        )
        tenants.set_membership(session, admin, tenant, ada, Role.USER)
        projects.create_project(session, admin, "admins", "")

    with database.session() as session:
        ada = authenticate(session, str(ada_key), None)
        own = projects.create_project(session, ada, "ada-work", "")
        projects.update_project(session, ada, own, "ada-lab", "mine")
        theirs = projects.find_project(session, ada, "admins")
        with pytest.raises(Forbidden) as rename_error:
            projects.update_project(session, ada, theirs, None, "taken over")
        with pytest.raises(Forbidden) as delete_error:
            projects.delete_project(session, ada, theirs)
        projects.delete_project(session, ada, own)

    assert "you may not change project 'admins'" in rename_error.value.message
    assert "you may not delete project 'admins'" in delete_error.value.message


def test_change_raises_version(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        project = projects.create_project(session, admin, "research", "text")
        session.flush()
        created = project.version
        projects.update_project(session, admin, project, "labs", None)
        renamed = project.version
        projects.update_project(session, admin, project, None, "new text")
        described = project.version
        projects.update_project(session, admin, project, "labs", "new text")
        unchanged = project.version

    assert created == 1
    assert renamed == 2
    assert described == 3
    assert unchanged == 3


def test_stale_version_rejected(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        project = projects.create_project(session, admin, "research", "text")
        session.flush()
        projects.update_project(session, admin, project, None, "first", expected_version=1)
        with pytest.raises(Conflict) as raised:
            projects.update_project(session, admin, project, "labs", "second", expected_version=1)

    assert raised.value.field == "version"
    assert raised.value.details == {"current_version": 2}
    assert raised.value.message == (
        "project 'research' was changed by someone else (version 2, you sent 1); "
        "read it again and retry"
    )
    assert project.name == "research"
    assert project.description == "first"


def test_current_version_accepted(database: Database) -> None:
    with database.session() as session:
        admin = _admin(session)
        project = projects.create_project(session, admin, "research", "text")
        session.flush()
        projects.update_project(session, admin, project, "labs", None, expected_version=1)
        projects.update_project(session, admin, project, None, "more", expected_version=2)

        assert project.name == "labs"
        assert project.description == "more"
        assert project.version == 3


@pytest.mark.parametrize("schema", [ProjectUpdate, EndpointUpdate])
@pytest.mark.parametrize("version", ["3", True, 3.0])
def test_version_must_be_integer(schema: type[BaseModel], version: object) -> None:
    with pytest.raises(ValidationError) as raised:
        schema.model_validate({"version": version})

    assert raised.value.errors()[0]["loc"] == ("version",)
