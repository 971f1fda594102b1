"""Finding an endpoint API key by its ID, the start of its ID, or the key itself."""

import pytest
from sqlalchemy import update

from berth.auth import authenticate
from berth.db.engine import Database
from berth.db.models import EndpointKey
from berth.errors import Conflict, NotFound
from berth.service import endpoints, keys
from berth.service.runtime_settings import RuntimeSettings
from tests.unit.conftest import UNIT_ADMIN_KEY as ADMIN_KEY

LIMITS = endpoints.Limits(capacity=8, max_instances_per_endpoint=4)
# IDs given to the endpoint's keys, so that two of them share a start.
KEY_IDS = {
    "FirstKey": "aaaa1111-0000-4000-8000-000000000001",
    "web": "bbbb2222-0000-4000-8000-000000000002",
    "mobile": "bbbb3333-0000-4000-8000-000000000003",
}


@pytest.fixture
def keyed(database: Database) -> dict[str, str]:
    """Create endpoint 'keyed' with three keys of known IDs; return each key by description."""
    with database.session() as session:
        principal = authenticate(session, ADMIN_KEY, None)
        endpoint, first_key = endpoints.create_endpoint(
            session,
            principal,
            LIMITS,
            project_ref="default",
            name="keyed",
            model_ref="echo",
            instances=1,
            runtime_settings=RuntimeSettings(),
        )
        secrets = {"FirstKey": first_key}
        for description in ("web", "mobile"):
            _row, secrets[description] = keys.add_key(session, principal, endpoint, description)
        session.flush()
        for row in keys.list_keys(session, endpoint):
            session.execute(
                update(EndpointKey)
                .where(EndpointKey.id == row.id)
                .values(id=KEY_IDS[row.description])
            )
    return secrets


def find(database: Database, ref: str) -> EndpointKey:
    with database.session() as session:
        principal = authenticate(session, ADMIN_KEY, None)
        endpoint = endpoints.find_endpoint(session, principal, "keyed")
        row = keys.find_key(session, endpoint, ref)
        session.expunge(row)
        return row


@pytest.mark.parametrize(
    ("ref", "description"),
    [
        ("bbbb2222-0000-4000-8000-000000000002", "web"),
        ("aaaa", "FirstKey"),
        ("AAAA1111", "FirstKey"),
        ("bbbb3", "mobile"),
        ("bbbb2222-00", "web"),
    ],
)
def test_key_found_by_id_or_start(
    database: Database, keyed: dict[str, str], ref: str, description: str
) -> None:
    assert find(database, ref).description == description


def test_key_found_by_itself(database: Database, keyed: dict[str, str]) -> None:
    assert find(database, keyed["mobile"]).description == "mobile"


def test_shared_id_start_is_rejected(database: Database, keyed: dict[str, str]) -> None:
    with pytest.raises(Conflict) as caught:
        find(database, "bbbb")

    assert KEY_IDS["web"] in caught.value.message
    assert KEY_IDS["mobile"] in caught.value.message
    assert "give more characters of the ID" in caught.value.message


def test_unknown_id_start_is_named(database: Database, keyed: dict[str, str]) -> None:
    with pytest.raises(NotFound) as caught:
        find(database, "cccc")

    assert caught.value.message.startswith("API key 'cccc' not found on endpoint 'keyed'")


def test_too_short_start_is_named(database: Database, keyed: dict[str, str]) -> None:
    with pytest.raises(NotFound) as caught:
        find(database, "aaa")

    # Too short for an ID start, and no key either, since keys start with berth_ek_.
    assert caught.value.message.startswith("'aaa' is too short to name an API key")
    assert "at least 4 characters of the key's ID" in caught.value.message


def test_unknown_key_is_not_echoed(database: Database, keyed: dict[str, str]) -> None:
    with pytest.raises(NotFound) as caught:
        find(database, "berth_ek_not-a-real-key")

    assert "API key with the value given not found" in caught.value.message
    assert "not-a-real-key" not in caught.value.message
