"""What users see of tenants: the message for a member of disabled tenants only, the
memberships and default tenant that user lists show, which callers get `has_password`,
and who may change the endpoints of a disabled tenant."""

import pytest
from sqlalchemy.orm import Session

from berth.api.convert import user_out
from berth.auth import Principal, authenticate
from berth.db.engine import Database
from berth.db.models import Endpoint, Tenant, User
from berth.errors import Forbidden, InvalidInput
from berth.service import tenants, users
from berth.states import Role
from tests.unit.conftest import UNIT_ADMIN_KEY


def _ada_and_grace_in_research(session: Session, admin: Principal) -> tuple[str, User, Tenant]:
    """Create tenants research and secret, ada in research, and grace in both; return ada's
    key, grace and the secret tenant."""
    research = tenants.create_tenant(session, admin, "research")
    secret = tenants.create_tenant(session, admin, "secret")
    ada, ada_key = users.create_user(session, admin, users.NewUser(username="ada", create_key=True))
    grace, _grace_key = users.create_user(session, admin, users.NewUser(username="grace"))
    tenants.set_membership(session, admin, research, ada, Role.USER)
    tenants.set_membership(session, admin, research, grace, Role.USER)
    return str(ada_key), grace, secret


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


def test_user_list_hides_other_tenants(database: Database) -> None:
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        ada_key, grace, secret = _ada_and_grace_in_research(session, admin)
        tenants.set_membership(session, admin, secret, grace, Role.TENANT_ADMIN)
        grace.default_tenant_id = secret.id

    with database.session() as session:
        ada_principal = authenticate(session, str(ada_key), None)
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        rows, _total = users.list_users(session, ada_principal, 100, 0)
        seen_by_ada = {row.username: user_out(row, ada_principal) for row in rows}
        grace_row = users.find_user(session, admin, "grace")
        seen_by_admin = user_out(grace_row, admin)

    grace_tenants = [membership.tenant.name for membership in seen_by_ada["grace"].memberships]
    assert grace_tenants == ["research"]
    assert seen_by_ada["grace"].default_tenant_id is None
    admin_tenants = sorted(membership.tenant.name for membership in seen_by_admin.memberships)
    assert admin_tenants == ["research", "secret"]
    assert seen_by_admin.default_tenant_id is not None


def test_disabled_tenant_cannot_become_default(database: Database) -> None:
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        paused = tenants.create_tenant(session, admin, "paused")
        ada, _key = users.create_user(session, admin, users.NewUser(username="ada"))
        tenants.set_membership(session, admin, paused, ada, Role.USER)
        tenants.update_tenant(session, admin, paused, None, True)

        with pytest.raises(InvalidInput) as error:
            users.update_user(session, admin, ada, default_tenant=paused)

        assert ada.default_tenant_id is None
    assert error.value.field == "default_tenant"
    assert "tenant 'paused' is disabled" in error.value.message
    assert "`berth tenant enable paused`" in error.value.message
    assert "choose another tenant" in error.value.message


def test_disabled_default_tenant_is_skipped(database: Database) -> None:
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        first = tenants.create_tenant(session, admin, "first")
        second = tenants.create_tenant(session, admin, "second")
        ada, ada_key = users.create_user(
            session, admin, users.NewUser(username="ada", create_key=True)
        )
        tenants.set_membership(session, admin, first, ada, Role.USER)
        tenants.set_membership(session, admin, second, ada, Role.USER)
        users.update_user(session, admin, ada, default_tenant=second)
        tenants.update_tenant(session, admin, second, None, True)

    with database.session() as session:
        ada_principal = authenticate(session, str(ada_key), None)
        seen_by_ada = user_out(users.find_user(session, ada_principal, "me"), ada_principal)

    assert ada_principal.tenant_name == "first"
    assert seen_by_ada.default_tenant_id is not None
    assert seen_by_ada.default_tenant_disabled is True
    assert seen_by_ada.default_tenant_hidden is False


def test_default_tenant_of_hidden_tenant(database: Database) -> None:
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        ada_key, grace, secret = _ada_and_grace_in_research(session, admin)
        tenants.set_membership(session, admin, secret, grace, Role.USER)
        users.update_user(session, admin, grace, default_tenant=secret)
        tenants.update_tenant(session, admin, secret, None, True)

    with database.session() as session:
        ada_principal = authenticate(session, str(ada_key), None)
        seen_by_ada = user_out(users.find_user(session, ada_principal, "grace"), ada_principal)

    assert seen_by_ada.default_tenant_id is None
    assert seen_by_ada.default_tenant_hidden is True
    # Whether the hidden tenant is disabled is as secret as its name.
    assert seen_by_ada.default_tenant_disabled is False
    assert "secret" not in seen_by_ada.model_dump_json()


def test_has_password_shown_to_self_and_admins(database: Database) -> None:
    with database.session() as session:
        admin = authenticate(session, UNIT_ADMIN_KEY, None)
        research = tenants.create_tenant(session, admin, "research")
        keys = {}
        for name, role in (("ada", Role.USER), ("grace", Role.USER), ("tom", Role.TENANT_ADMIN)):
            user, key = users.create_user(
                session,
                admin,
                users.NewUser(username=name, password="a-long-password", create_key=True),
            )
            tenants.set_membership(session, admin, research, user, role)
            keys[name] = str(key)

    with database.session() as session:
        callers = {name: authenticate(session, key, None) for name, key in keys.items()}
        callers["admin"] = authenticate(session, UNIT_ADMIN_KEY, None)
        grace = users.find_user(session, callers["admin"], "grace")
        seen = {name: user_out(grace, caller).has_password for name, caller in callers.items()}

    assert seen["grace"] is True
    assert seen["admin"] is True
    assert seen["tom"] is True
    assert seen["ada"] is None


def test_disabled_tenant_endpoint_manage_rights() -> None:
    lent = Tenant(id="tenant-lent", name="lent", disabled=True)
    endpoint = Endpoint(
        id="endpoint-1",
        name="shared",
        owner_id="user-bella",
        tenant_id=lent.id,
        tenant=lent,
        share_with_all_tenants=True,
    )
    roles = {lent.id: Role.TENANT_ADMIN, "tenant-beta": Role.USER}
    # The owner, who is also a TenantAdmin of lent, acts in beta.
    owner = Principal("user-bella", "bella", False, "tenant-beta", "beta", roles)
    org_admin = Principal("user-admin", "admin", True, "tenant-beta", "beta")

    owner_while_disabled = owner.can_manage_endpoint(endpoint)
    org_admin_while_disabled = org_admin.can_manage_endpoint(endpoint)
    with pytest.raises(Forbidden) as error:
        owner.require_manage(endpoint, "stop")
    org_admin.require_manage(endpoint, "stop")
    lent.disabled = False

    # The web UI shows the buttons that change an endpoint only where this is true.
    assert owner_while_disabled is False
    assert org_admin_while_disabled is True
    assert error.value.code == "tenant_disabled"
    assert "its tenant 'lent' is disabled" in error.value.message
    assert owner.can_manage_endpoint(endpoint) is True
