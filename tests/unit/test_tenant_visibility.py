"""What users see of tenants: the message for a member of disabled tenants only, and
the memberships that user lists show."""

import pytest

from berth.auth import authenticate
from berth.db.engine import Database
from berth.errors import Forbidden
from berth.service import tenants, users
from berth.states import Role
from tests.unit.conftest import UNIT_ADMIN_KEY


def test_member_of_disabled_tenant_message(database: Database) -> None:
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        research = tenants.create_tenant(session, admin, "research")
        _user, ada_key = users.create_user(
            session, admin, users.NewUser(username="ada", create_key=True)
        )
        tenants.set_membership(session, admin, research, _user, Role.USER)
        tenants.update_tenant(session, admin, research, None, True)

    with database.session() as session:
        ada = authenticate(session, str(ada_key), None)
        with pytest.raises(Forbidden) as error:
            _tenant_id = ada.active_tenant_id

    assert "tenant 'research', which is disabled" in error.value.message
    assert "`berth tenant enable research`" in error.value.message
    assert "not a member of any tenant" not in error.value.message
