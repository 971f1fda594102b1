"""Password sign-in of a disabled user: the right password gets the reason, a wrong
one gets the same error as an unknown user."""

import pytest

from berth.auth import authenticate, authenticate_session
from berth.db.engine import Database
from berth.db.models import User
from berth.errors import Unauthenticated, UserDisabled
from berth.service import sessions, users
from tests.unit.conftest import UNIT_ADMIN_KEY

PASSWORD = "ada-password-123"


@pytest.fixture
def disabled_ada(database: Database) -> Database:
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        ada, _key = users.create_user(
            session, admin, users.NewUser(username="ada", password=PASSWORD)
        )
        users.update_user(session, admin, ada, disabled=True)
    return database


def test_disabled_user_right_password(disabled_ada: Database) -> None:
    limiter = sessions.LoginLimiter(max_failures=1)
    with disabled_ada.session() as session, pytest.raises(UserDisabled) as error:
        sessions.sign_in(session, limiter, "ada", PASSWORD, "127.0.0.1")

    assert error.value.status_code == 401
    assert error.value.code == "user_disabled"
    assert "user 'ada' is disabled" in error.value.message
    assert "`berth user enable ada`" in error.value.message
    # The right password is no failed attempt, so the next sign-in is not limited.
    limiter.check("ada", "127.0.0.1")


def test_disabled_user_wrong_password(disabled_ada: Database) -> None:
    limiter = sessions.LoginLimiter()
    with disabled_ada.session() as session, pytest.raises(Unauthenticated) as wrong:
        sessions.sign_in(session, limiter, "ada", "not-the-password", "127.0.0.1")
    with disabled_ada.session() as session, pytest.raises(Unauthenticated) as unknown:
        sessions.sign_in(session, limiter, "nobody", "not-the-password", "127.0.0.1")

    assert not isinstance(wrong.value, UserDisabled)
    assert wrong.value.message == "wrong user name or password"
    assert wrong.value.message == unknown.value.message


def test_disable_ends_web_sessions(database: Database) -> None:
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        ada, ada_key = users.create_user(
            session,
            admin,
            users.NewUser(username="ada", password=PASSWORD, create_key=True),
        )
        ada_id = ada.id
    with database.session() as session:
        token, _principal = sessions.sign_in(
            session, sessions.LoginLimiter(), "ada", PASSWORD, "127.0.0.1"
        )
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        users.update_user(session, admin, session.get_one(User, ada_id), disabled=True)
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        users.update_user(session, admin, session.get_one(User, ada_id), disabled=False)

    with database.session() as session, pytest.raises(Unauthenticated) as ended:
        authenticate_session(session, token, None)
    assert ended.value.message == "your session has ended; sign in again"
    # Platform keys are long-lived credentials, so they work again once the user is enabled.
    assert ada_key is not None
    with database.session() as session:
        assert authenticate(session, ada_key, None).username == "ada"
