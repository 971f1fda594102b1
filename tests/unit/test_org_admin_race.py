"""Two OrgAdmins who disable each other at the same moment leave one of them enabled."""

from sqlalchemy import event, func, select

from berth.auth import authenticate
from berth.db.engine import Database
from berth.db.models import User
from berth.db.transactions import run_transaction
from berth.errors import Conflict
from berth.service import users
from tests.unit.conftest import UNIT_ADMIN_KEY

WRITES = {"INSERT", "UPDATE", "DELETE"}


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
    interleaved = False

    def admin_disables_boss_first(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        # The admin's change commits after the boss's change has read the users and
        # before it writes.
        nonlocal interleaved
        if interleaved or statement.lstrip().split(" ", 1)[0].upper() not in WRITES:
            return
        interleaved = True
        with database.session() as other:
            principal = authenticate(other, UNIT_ADMIN_KEY, None)
            target = users.find_user(other, principal, "boss")
            users.update_user(other, principal, target, disabled=True)

    event.listen(database.engine, "before_cursor_execute", admin_disables_boss_first)

    def boss_disables_admin() -> None:
        target = users.find_user(session, principal, "admin")
        users.update_user(session, principal, target, disabled=True)

    with database.session() as session:
        # As in the API, the caller is authenticated once, before the change and its
        # retries.
        principal = authenticate(session, boss_key, None)
        try:
            run_transaction(session, boss_disables_admin, "boss disables admin")
        except Conflict as error:
            assert "last enabled OrgAdmin" in error.message
    event.remove(database.engine, "before_cursor_execute", admin_disables_boss_first)

    assert interleaved
    assert _enabled_org_admins(database) == 1
