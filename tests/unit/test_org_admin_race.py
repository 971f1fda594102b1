"""Two OrgAdmins who disable each other at the same moment leave one of them enabled."""

from sqlalchemy import func, select

from berth.auth import authenticate
from berth.db.engine import Database
from berth.db.models import User
from berth.db.transactions import run_transaction
from berth.errors import Conflict
from berth.service import users
from tests.unit.conftest import UNIT_ADMIN_KEY, before_first_write


def _enabled_org_admins(database: Database) -> int:
    with database.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(User)
                .where(User.is_org_admin.is_(True), User.disabled.is_(False))
            )
            or 0
        )


def test_org_admins_disabling_each_other_keep_one(database: Database) -> None:
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        _boss, boss_key = users.create_user(
            session, admin, users.NewUser("boss", is_org_admin=True, create_key=True)
        )
    assert boss_key is not None

    def admin_disables_boss() -> None:
        with database.session() as other:
            principal = authenticate(other, UNIT_ADMIN_KEY, None)
            target = users.find_user(other, principal, "boss")
            users.update_user(other, principal, target, disabled=True)

    def boss_disables_admin() -> None:
        target = users.find_user(session, principal, "admin")
        users.update_user(session, principal, target, disabled=True)

    with database.session() as session:
        # As in the API, the caller is authenticated once, before the change and its
        # retries.
        principal = authenticate(session, boss_key, None)
        # The admin's change commits after the boss's change has read the users and
        # before it writes.
        with before_first_write(database, admin_disables_boss) as interleaved:
            try:
                run_transaction(session, boss_disables_admin, "boss disables admin")
            except Conflict as error:
                assert "last enabled OrgAdmin" in error.message

    assert interleaved
    assert _enabled_org_admins(database) == 1
