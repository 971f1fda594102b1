"""`berth tenant` commands against a real server."""

from berth.client import Client
from tests.cli.conftest import RunCli, new_user, parse_json, unboxed, unique


def test_tenant_create_info_list(cli: RunCli, client: Client) -> None:
    name = unique("acme")

    created = cli("tenant", "create", name)
    info = parse_json(cli("tenant", "info", name, "-o", "json"))
    listed = cli("tenant", "list")

    assert created.exit_code == 0, created.output
    assert created.stdout.startswith(f"Created tenant {name} with project default.")
    # The creator becomes the new tenant's TenantAdmin.
    assert "Your role  TenantAdmin" in created.stdout
    assert info == client.get_tenant(name)
    assert info["role"] == "TenantAdmin"
    row = next(line for line in listed.stdout.splitlines() if line.startswith(f"{name} "))
    assert row.split()[1:3] == ["enabled", "TenantAdmin"]
    assert all(len(line) <= 80 for line in listed.stdout.splitlines())


def test_tenant_rename_disable_enable(cli: RunCli, client: Client) -> None:
    old_name, new_name = unique("old"), unique("new")
    client.create_tenant(old_name)
    member_key = new_user(client, unique("worker"), old_name)

    renamed = cli("tenant", "rename", old_name, new_name)
    disabled = cli("tenant", "disable", new_name)
    locked_out = cli("project", "list", "--tenant", new_name, BERTH_API_KEY=member_key)
    enabled = cli("tenant", "enable", new_name, "-o", "json")
    back_in = cli("project", "list", "--tenant", new_name, BERTH_API_KEY=member_key)

    assert renamed.exit_code == 0, renamed.output
    assert renamed.stdout.startswith(f"Renamed tenant {old_name} to {new_name}.")
    assert disabled.exit_code == 0, disabled.output
    assert "Status     disabled" in disabled.stdout
    assert locked_out.exit_code == 1
    assert f"tenant '{new_name}' is disabled" in locked_out.stderr
    assert parse_json(enabled)["disabled"] is False
    assert back_in.exit_code == 0, back_in.output


def test_tenant_only_org_admin_creates(cli: RunCli, client: Client) -> None:
    tenant = unique("team")
    client.create_tenant(tenant)
    tenant_admin_key = new_user(client, unique("lead"), tenant, "TenantAdmin")

    result = cli("tenant", "create", unique("other"), BERTH_API_KEY=tenant_admin_key)

    assert result.exit_code == 1
    assert result.stderr == "Error: only an OrgAdmin may create tenants\n"


def test_tenant_member_commands(cli: RunCli, client: Client) -> None:
    tenant, user = unique("crew"), unique("sam")
    client.create_tenant(tenant)
    client.create_user(user)

    added = cli("tenant", "add-member", tenant, user)
    again = cli("tenant", "add-member", tenant, user, "--role", "User")
    other_role = cli("tenant", "add-member", tenant, user, "--role", "TenantAdmin")
    promoted = cli("tenant", "set-role", tenant, user, "--role", "tenantadmin")
    members = cli("tenant", "members", tenant)
    removed = cli("tenant", "remove-member", tenant, user)
    members_after = parse_json(cli("tenant", "members", tenant, "-o", "json"))

    assert added.exit_code == 0, added.output
    assert added.stdout == f"Added {user} to tenant {tenant} with role User.\n"
    assert again.exit_code == 0, again.output
    assert "already a member" in again.stdout
    assert other_role.exit_code == 1
    assert "use `berth tenant set-role`" in other_role.stderr
    assert promoted.stdout == f"{user} now has role TenantAdmin in tenant {tenant}.\n"
    rows = {line.split()[0]: line.split()[1] for line in members.stdout.splitlines()[2:]}
    assert rows == {"admin": "TenantAdmin", user: "TenantAdmin"}
    assert removed.stdout == f"Removed {user} from tenant {tenant}.\n"
    assert [row["user"]["name"] for row in members_after] == ["admin"]


def test_tenant_member_commands_reject_non_members(cli: RunCli, client: Client) -> None:
    tenant, user = unique("crew"), unique("outsider")
    client.create_tenant(tenant)
    client.create_user(user)

    set_role = cli("tenant", "set-role", tenant, user, "--role", "User")
    remove = cli("tenant", "remove-member", tenant, user)

    assert set_role.exit_code == 1
    assert set_role.stderr.startswith(f"Error: user '{user}' is not a member of tenant")
    assert "use `berth tenant add-member`" in set_role.stderr
    assert remove.exit_code == 1
    assert remove.stderr == f"Error: user '{user}' is not a member of tenant '{tenant}'\n"


def test_tenant_add_member_me(cli: RunCli, client: Client) -> None:
    tenant = unique("self")
    client.create_tenant(tenant)
    cli("tenant", "remove-member", tenant, "me")

    result = cli("tenant", "add-member", tenant, "me", "--role", "User", "-o", "json")

    membership = parse_json(result)
    assert membership["user"]["name"] == "admin"
    assert membership["role"] == "User"


def test_tenant_plain_user_cannot_add_member(cli: RunCli, client: Client) -> None:
    tenant, newcomer = unique("crew"), unique("newcomer")
    client.create_tenant(tenant)
    member_key = new_user(client, unique("plain"), tenant)
    client.create_user(newcomer)

    result = cli("tenant", "add-member", tenant, newcomer, BERTH_API_KEY=member_key)

    assert result.exit_code == 1
    assert "only a TenantAdmin of the tenant or an OrgAdmin may change members" in result.stderr


def test_tenant_outsider_sees_not_found(cli: RunCli, client: Client) -> None:
    hidden, own = unique("hidden"), unique("own")
    client.create_tenant(hidden)
    client.create_tenant(own)
    outsider_key = new_user(client, unique("outsider"), own)

    info = cli("tenant", "info", hidden, BERTH_API_KEY=outsider_key)
    members = cli("tenant", "members", hidden, BERTH_API_KEY=outsider_key)

    assert info.exit_code == 1
    assert info.stderr == f"Error: tenant '{hidden}' not found\n"
    assert members.exit_code == 1
    assert f"tenant '{hidden}' not found" in members.stderr


def test_unknown_role_lists_roles(cli: RunCli) -> None:
    result = cli("tenant", "add-member", "default", "me", "--role", "Superuser")

    assert result.exit_code == 2
    assert "'Superuser' is not a tenant role; choose TenantAdmin or User" in unboxed(result.output)
