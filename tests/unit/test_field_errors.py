"""One InvalidInput that names every invalid field of a request, from the service layer."""

from pathlib import Path

import pytest

from berth.auth import authenticate
from berth.db.engine import Database
from berth.errors import FieldError, InputChecks, InvalidInput, NotFound
from berth.service import endpoints, models
from tests.unit.conftest import UNIT_ADMIN_KEY

LIMITS = endpoints.Limits(capacity=8, max_instances_per_endpoint=4)


def fields_of(error: InvalidInput) -> list[str]:
    return [item.field for item in error.errors]


def test_checks_combine_failures_in_order() -> None:
    checks = InputChecks()
    with checks.check():
        raise InvalidInput("name must not be empty", field="name")
    with checks.check():
        pass
    with checks.check():
        raise InvalidInput("instances 0 is out of range", field="instances")

    with pytest.raises(InvalidInput) as raised:
        checks.raise_failures()

    assert raised.value.field == "name"
    assert raised.value.message == "name must not be empty; instances 0 is out of range"
    assert raised.value.errors == [
        FieldError("name", "name must not be empty"),
        FieldError("instances", "instances 0 is out of range"),
    ]


def test_checks_let_other_errors_through() -> None:
    checks = InputChecks()

    with pytest.raises(NotFound), checks.check():
        raise NotFound("model 'x' not found", field="model")

    assert checks.failures == []


def test_single_failure_keeps_its_details() -> None:
    failure = InvalidInput("bad", field="name", hint="use letters")
    checks = InputChecks()
    with checks.check():
        raise failure

    with pytest.raises(InvalidInput) as raised:
        checks.raise_failures()

    assert raised.value is failure


def test_body_lists_every_field() -> None:
    error = InvalidInput.combine(
        [InvalidInput("name is bad", field="name"), InvalidInput("path is bad", field="path")]
    )

    assert error.to_body() == {
        "error": {
            "code": "invalid_input",
            "message": "name is bad; path is bad",
            "field": "name",
            "errors": [
                {"field": "name", "message": "name is bad"},
                {"field": "path", "message": "path is bad"},
            ],
        }
    }


def test_error_without_field_lists_none() -> None:
    assert "errors" not in InvalidInput("invalid request").to_body()["error"]


def test_create_endpoint_names_every_field(database: Database) -> None:
    with database.session() as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        with pytest.raises(InvalidInput) as raised:
            endpoints.create_endpoint(
                session,
                principal,
                LIMITS,
                project_ref="default",
                name="has space",
                model_ref="demo-tiny-llama-base",
                instances=0,
                share_with_all_tenants=True,
            )

    error = raised.value
    assert fields_of(error) == ["name", "instances", "model", "share_with_all_tenants"]
    assert error.field == "name"
    assert "'has space' is invalid" in error.errors[0].message
    assert "instances 0 is out of range" in error.errors[1].message
    assert "base model" in error.errors[2].message
    assert "sharing with all tenants is turned off" in error.errors[3].message


def test_update_endpoint_lists_every_field(database: Database) -> None:
    with database.session() as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        endpoint, _key = endpoints.create_endpoint(
            session,
            principal,
            LIMITS,
            project_ref="default",
            name="kept",
            model_ref="echo",
            instances=1,
        )
        session.flush()
        change = endpoints.EndpointChange(
            description="never stored",
            instances=9,
            model="demo-tiny-llama",
            share_with_all_tenants=True,
        )
        with pytest.raises(InvalidInput) as raised:
            endpoints.update_endpoint(session, principal, LIMITS, endpoint, change)

        assert endpoint.description == ""
        assert endpoint.instances == 1
        assert endpoint.model.name == "echo"
        assert endpoint.share_with_all_tenants is False

    error = raised.value
    assert fields_of(error) == ["share_with_all_tenants", "model", "instances"]
    assert "serves Text Generation, but endpoint 'kept' serves Echo" in error.errors[1].message
    assert "instances 9 is out of range" in error.errors[2].message


def test_import_names_every_field(database: Database, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    request = models.ImportRequest(path=str(missing), name="has space", checkpoint=" ")
    with database.session() as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        with pytest.raises(InvalidInput) as raised:
            models.import_model(session, principal, request, tmp_path / "models")

    error = raised.value
    assert fields_of(error) == ["name", "checkpoint", "path"]
    assert error.errors[1].message == "checkpoint must not be empty"
    assert error.errors[2].message == f"path '{missing}' does not exist on the Berth server"
    assert not (tmp_path / "models").exists()
