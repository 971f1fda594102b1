"""Platform API key rules in the service layer: no revoking the key in use, and the
start-up warning about BERTH_ADMIN_KEY on an existing home folder."""

import logging

import pytest
from sqlalchemy import select

from berth.auth import authenticate, principal_for
from berth.bootstrap import ADMIN_USERNAME, bootstrap
from berth.db.engine import Database
from berth.db.models import PlatformKey, User
from berth.errors import Conflict, NotFound
from berth.service import users
from tests.unit.conftest import UNIT_ADMIN_KEY


def test_revoke_own_key_in_use_is_409(database: Database) -> None:
    with database.session() as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        admin = users.find_user(session, principal, "me")

        with pytest.raises(Conflict) as error:
            users.revoke_platform_key(session, principal, admin, str(principal.platform_key_id))

        row = session.get(PlatformKey, principal.platform_key_id)
        assert row is not None
        assert row.revoked_at is None
    assert error.value.status_code == 409
    assert "authenticates this request" in error.value.message
    assert "berth platform-key create" in error.value.message


def test_revoke_other_own_key_works(database: Database) -> None:
    with database.session() as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        admin = users.find_user(session, principal, "me")
        spare, _key = users.create_platform_key(session, principal, admin, "spare")
        session.flush()

        revoked = users.revoke_platform_key(session, principal, admin, spare.id)

        assert revoked.revoked_at is not None


def test_revoke_from_web_session_works(database: Database) -> None:
    """A web session signs in with a password, which stays a way in after the revoke."""
    with database.session() as session:
        admin = session.scalar(select(User).where(User.username_key == ADMIN_USERNAME))
        assert admin is not None
        principal = principal_for(session, admin, None)
        key_row = session.scalar(select(PlatformKey).where(PlatformKey.user_id == admin.id))
        assert key_row is not None

        revoked = users.revoke_platform_key(session, principal, admin, key_row.id)

        assert revoked.revoked_at is not None


def test_admin_key_revoked_warns_at_start(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with database.session() as session:
        row = session.scalar(select(PlatformKey))
        assert row is not None
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        admin = users.find_user(session, principal, "me")
        _spare, spare_key = users.create_platform_key(session, principal, admin, "spare")
        session.flush()
        spare_principal = authenticate(session, spare_key, None)
        users.revoke_platform_key(session, spare_principal, admin, row.id)

    with caplog.at_level(logging.WARNING), database.session() as session:
        bootstrap(session, UNIT_ADMIN_KEY)

    assert "was revoked" in caplog.text
    assert "stays in force" not in caplog.text


def test_admin_key_unknown_warns_at_start(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), database.session() as session:
        bootstrap(session, "another-admin-key-value")

    assert "matches no platform key" in caplog.text
    assert "stays in force" not in caplog.text


def test_admin_key_active_is_silent(database: Database, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), database.session() as session:
        bootstrap(session, UNIT_ADMIN_KEY)

    assert "BERTH_ADMIN_KEY" not in caplog.text


def add_key_with_id(database: Database, key_id: str, username: str = ADMIN_USERNAME) -> None:
    with database.session() as session:
        user = session.scalar(select(User).where(User.username_key == username))
        assert user is not None
        session.add(PlatformKey(id=key_id, user_id=user.id, key_hash=key_id, description=key_id))


def revoke_as_admin(database: Database, ref: str) -> PlatformKey:
    with database.session() as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        admin = users.find_user(session, principal, "me")
        return users.revoke_platform_key(session, principal, admin, ref)


def test_revoke_by_unique_id_start(database: Database) -> None:
    add_key_with_id(database, "573f6d1b-0000-4000-8000-000000000001")

    revoked = revoke_as_admin(database, "573F")

    assert revoked.id == "573f6d1b-0000-4000-8000-000000000001"
    assert revoked.revoked_at is not None


def test_revoke_by_ambiguous_id_start(database: Database) -> None:
    add_key_with_id(database, "573f6d1b-0000-4000-8000-000000000001")
    add_key_with_id(database, "573f6d1b-0000-4000-8000-000000000002")

    with pytest.raises(Conflict) as error:
        revoke_as_admin(database, "573f6d1b")

    assert error.value.status_code == 409
    assert "is the start of several keys' IDs" in error.value.message
    assert "573f6d1b-0000-4000-8000-000000000002" in error.value.message


def test_revoke_by_short_id_start(database: Database) -> None:
    add_key_with_id(database, "573f6d1b-0000-4000-8000-000000000001")

    with pytest.raises(NotFound) as error:
        revoke_as_admin(database, "573")

    assert "too short to name a platform API key" in error.value.message
    assert "at least 4 characters" in error.value.message


def test_revoke_id_start_of_other_user(database: Database) -> None:
    with database.session() as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        users.create_user(session, principal, users.NewUser(username="ada"))
    add_key_with_id(database, "573f6d1b-0000-4000-8000-000000000001", "ada")

    with pytest.raises(NotFound) as error:
        revoke_as_admin(database, "573f6d1b")

    assert "it belongs to user 'ada'" in error.value.message
    assert "`berth platform-key revoke 573f6d1b --user ada`" in error.value.message


def test_revoke_by_key_value_hides_it(database: Database) -> None:
    with pytest.raises(NotFound) as error:
        revoke_as_admin(database, "berth_pk_secret-value")

    assert "secret-value" not in error.value.message
    assert "berth platform-key list" in error.value.message
