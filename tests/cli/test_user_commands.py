"""`berth user` commands against a real server."""

import httpx
import pytest

from berth.cli import user as user_commands
from berth.client import Client
from tests.cli.conftest import RunCli, new_user, parse_json, unboxed, unique
from tests.support import BerthServer

PASSWORD = "correct-horse-battery"


def sign_in(server: BerthServer, username: str, password: str) -> int:
    response = httpx.post(
        f"{server.url}/api/v1/auth/login", json={"username": username, "password": password}
    )
    return response.status_code


def test_user_create_prints_key_once(cli: RunCli, client: Client) -> None:
    tenant, name = unique("home"), unique("dana")
    client.create_tenant(tenant)

    result = cli(
        "user", "create", name, "--tenant", tenant, "--role", "TenantAdmin", "--create-key"
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Created user {name}.")
    key_line = next(line for line in result.stdout.splitlines() if line.startswith("Platform"))
    key = key_line.split()[-1]
    assert key.startswith("berth_pk_")
    assert "shows it only this once" in result.stdout
    assert f"{tenant}  TenantAdmin" in result.stdout
    # Without a USER argument, `user info` shows the caller, as `user info me` does.
    whoami = parse_json(cli("user", "info", "-o", "json", BERTH_API_KEY=key))
    assert whoami["username"] == name
    assert "key" not in cli("user", "info", name, "-o", "json").stdout


def test_user_create_json_has_key(cli: RunCli) -> None:
    created = parse_json(cli("user", "create", unique("eve"), "--create-key", "-o", "json"))
    plain = parse_json(cli("user", "create", unique("fay"), "--org-admin", "-o", "json"))

    assert created["api_key"].startswith("berth_pk_")
    assert created["memberships"] == []
    assert plain["api_key"] is None
    assert plain["is_org_admin"] is True


def test_user_create_password_stdin(cli: RunCli, server: BerthServer) -> None:
    name = unique("gil")

    result = cli("user", "create", name, "--password-stdin", input=f"{PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert "Password        set" in result.stdout
    assert sign_in(server, name, PASSWORD) == 200


def test_user_create_password_prompt(cli: RunCli, server: BerthServer) -> None:
    name = unique("hal")

    result = cli(
        "user",
        "create",
        name,
        "--password-prompt",
        "-o",
        "json",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )

    assert parse_json(result)["has_password"] is True
    assert PASSWORD not in result.output
    assert sign_in(server, name, PASSWORD) == 200


def test_user_create_option_errors(cli: RunCli) -> None:
    both = cli("user", "create", unique("x"), "--password-prompt", "--password-stdin")
    role_alone = cli("user", "create", unique("x"), "--role", "User")
    no_password = cli("user", "create", unique("x"), "--password-stdin", input="\n")

    assert both.exit_code == 2
    assert "pass either --password-prompt or --password-stdin" in unboxed(both.output)
    assert role_alone.exit_code == 2
    assert "--role needs --tenant" in unboxed(role_alone.output)
    assert no_password.exit_code == 1
    assert no_password.stderr.startswith("Error: no password on stdin")


def test_user_create_only_org_admin(cli: RunCli, client: Client) -> None:
    member_key = new_user(client, unique("ivy"))

    result = cli("user", "create", unique("x"), BERTH_API_KEY=member_key)

    assert result.exit_code == 1
    assert result.stderr == "Error: only an OrgAdmin may create users\n"


def test_user_list_and_info(cli: RunCli, client: Client) -> None:
    tenant, name = unique("list"), unique("jon")
    client.create_tenant(tenant)
    new_user(client, name, tenant)

    listed = cli("user", "list", "--limit", "500")
    info = cli("user", "info", name)

    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if line.startswith(f"{name} "))
    assert row.split() == [name, "no", "enabled", tenant, "(User)"]
    assert all(len(line) <= 80 for line in listed.stdout.splitlines())
    assert info.exit_code == 0, info.output
    assert f"Name            {name}" in info.stdout
    assert "Default tenant  not set" in info.stdout
    assert f"{tenant}  User" in info.stdout


def test_user_rename_disable_enable(cli: RunCli, client: Client) -> None:
    old_name, new_name = unique("kim"), unique("kai")
    key = new_user(client, old_name)

    renamed = cli("user", "rename", old_name, new_name)
    disabled = cli("user", "disable", new_name)
    locked_out = cli("user", "info", "me", BERTH_API_KEY=key)
    enabled = cli("user", "enable", new_name)
    back_in = cli("user", "info", "me", "-o", "json", BERTH_API_KEY=key)

    assert renamed.stdout.startswith(f"Renamed user {old_name} to {new_name}.")
    assert disabled.stdout.startswith(f"Disabled user {new_name}.")
    assert "Status          disabled" in disabled.stdout
    assert locked_out.exit_code == 1
    assert f"user '{new_name}' is disabled" in locked_out.stderr
    assert f"berth user enable {new_name}" in locked_out.stderr
    assert "--api-key" not in locked_out.stderr
    assert enabled.stdout.startswith(f"Enabled user {new_name}.")
    assert parse_json(back_in)["username"] == new_name


def test_user_set_org_admin(cli: RunCli, client: Client) -> None:
    name = unique("lee")
    client.create_user(name)

    on = cli("user", "set-org-admin", name, "--on")
    off = cli("user", "set-org-admin", name, "--off", "-o", "json")
    neither = cli("user", "set-org-admin", name)
    self_off = cli("user", "set-org-admin", "me", "--off")

    assert on.stdout.startswith(f"User {name} is now an OrgAdmin.")
    assert parse_json(off)["is_org_admin"] is False
    assert neither.exit_code == 2
    assert self_off.exit_code == 1
    assert "you cannot disable yourself or drop your own OrgAdmin flag" in self_off.stderr


def test_user_set_password_own(cli: RunCli, client: Client, server: BerthServer) -> None:
    name = unique("max")
    key = new_user(client, name)

    result = cli("user", "set-password", input=f"{PASSWORD}\n", BERTH_API_KEY=key)
    flagged = cli(
        "user",
        "set-password",
        "me",
        "--password-stdin",
        input="another-password-1\n",
        BERTH_API_KEY=key,
    )
    too_short = cli("user", "set-password", input="short\n", BERTH_API_KEY=key)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Set the password of user {name}.")
    assert flagged.exit_code == 0, flagged.output
    assert sign_in(server, name, "another-password-1") == 200
    assert too_short.exit_code == 1
    assert "password must be 10 to 256 characters long" in too_short.stderr


def test_user_set_password_ends_sessions(cli: RunCli, client: Client, server: BerthServer) -> None:
    name = unique("ora")
    key = new_user(client, name)
    first = cli("user", "set-password", input=f"{PASSWORD}\n", BERTH_API_KEY=key)
    assert first.exit_code == 0, first.output
    url = f"{server.url}/api/v1"

    with (
        httpx.Client(base_url=url) as own_browser,
        httpx.Client(base_url=url) as other_browser,
    ):
        login = {"username": name, "password": PASSWORD}
        assert own_browser.post("/auth/login", json=login).status_code == 200
        # The user sets a password with a platform key, so no web session is kept.
        by_self = cli("user", "set-password", input="second-password-1\n", BERTH_API_KEY=key)
        own_after_self = own_browser.get("/whoami").status_code

        login = {"username": name, "password": "second-password-1"}
        assert other_browser.post("/auth/login", json=login).status_code == 200
        by_org_admin = cli("user", "set-password", name, input="third-password-1\n")
        other_after_org_admin = other_browser.get("/whoami").status_code

    assert by_self.exit_code == 0, by_self.output
    assert own_after_self == 401
    assert by_org_admin.exit_code == 0, by_org_admin.output
    assert other_after_org_admin == 401
    assert "The user's web sessions have ended" in unboxed(by_org_admin.stdout)
    assert "platform API keys keep working" in unboxed(by_org_admin.stdout)
    with Client(server=server.url, api_key=key) as own_key:
        assert own_key.whoami()["user"]["name"] == name
    assert sign_in(server, name, "third-password-1") == 200


def test_user_set_password_prompts_on_terminal(
    cli: RunCli, client: Client, server: BerthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(user_commands, "stdin_is_terminal", lambda: True)
    name = unique("nia")
    key = new_user(client, name)

    result = cli("user", "set-password", input=f"{PASSWORD}\n{PASSWORD}\n", BERTH_API_KEY=key)

    assert result.exit_code == 0, result.output
    assert "Repeat for confirmation" in result.stderr
    assert PASSWORD not in result.output
    assert sign_in(server, name, PASSWORD) == 200


def test_user_set_password_rules(cli: RunCli, client: Client) -> None:
    other = unique("ned")
    client.create_user(other)
    member_key = new_user(client, unique("oda"))

    of_other = cli("user", "set-password", other, input=f"{PASSWORD}\n", BERTH_API_KEY=member_key)
    as_flag = cli("user", "set-password", "--password", PASSWORD)

    assert of_other.exit_code == 1
    # The other user is in no tenant of the caller's, so the server does not reveal them.
    assert f"user '{other}' not found" in of_other.stderr
    assert "creates users with `berth user create`" in unboxed(of_other.stderr)
    assert "web UI" not in of_other.stderr
    assert as_flag.exit_code == 2
    assert "No such option: --password" in unboxed(as_flag.output)


def test_user_set_default_tenant(cli: RunCli, client: Client, server: BerthServer) -> None:
    first, second, name = unique("first"), unique("second"), unique("pia")
    client.create_tenant(first)
    client.create_tenant(second)
    key = new_user(client, name, first)
    client.set_member(second, name, "User")

    result = cli("user", "set-default-tenant", second, BERTH_API_KEY=key)
    not_member = cli("user", "set-default-tenant", unique("none"), BERTH_API_KEY=key)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"The default tenant of user {name} is now {second}.")
    with Client(server=server.url, api_key=key) as as_user:
        assert as_user.whoami()["tenant"]["name"] == second
    assert not_member.exit_code == 1
    assert "not found" in not_member.stderr


def test_user_set_default_tenant_for_other(cli: RunCli, client: Client) -> None:
    tenant, name = unique("team"), unique("quin")
    client.create_tenant(tenant)
    client.create_user(name)

    result = cli("user", "set-default-tenant", tenant, "--user", name)

    assert result.exit_code == 1
    assert f"user '{name}' is not a member of tenant '{tenant}'" in result.stderr


def test_user_set_default_tenant_disabled(cli: RunCli, client: Client) -> None:
    tenant, name = unique("off"), unique("ria")
    client.create_tenant(tenant)
    client.create_user(name, tenant=tenant)
    client.update_tenant(tenant, disabled=True)
    try:
        result = cli("user", "set-default-tenant", tenant, "--user", name)
    finally:
        client.update_tenant(tenant, disabled=False)

    assert result.exit_code == 1
    assert f"tenant '{tenant}' is disabled, so it cannot be the default tenant" in unboxed(
        result.stderr
    )
    assert f"`berth tenant enable {tenant}`" in unboxed(result.stderr)
    assert "choose another tenant" in unboxed(result.stderr)


def test_user_info_disabled_default_tenant(cli: RunCli, client: Client) -> None:
    first, second, name = unique("one"), unique("two"), unique("sam")
    client.create_tenant(first)
    client.create_tenant(second)
    key = new_user(client, name, first)
    client.set_member(second, name, "User")
    client.update_user(name, default_tenant=second)
    client.update_tenant(second, disabled=True)
    try:
        info = cli("user", "info", "me", BERTH_API_KEY=key)
    finally:
        client.update_tenant(second, disabled=False)

    assert info.exit_code == 0, info.output
    assert (
        f"Default tenant  {second} (disabled: not used until an OrgAdmin enables it)" in info.stdout
    )


def test_user_info_of_other_user(cli: RunCli, client: Client) -> None:
    shared, hidden = unique("both"), unique("hidden")
    viewer, other = unique("tia"), unique("uma")
    client.create_tenant(shared)
    client.create_tenant(hidden)
    viewer_key = new_user(client, viewer, shared)
    client.create_user(other, tenant=shared, password=PASSWORD)
    client.set_member(hidden, other, "User")
    client.update_user(other, default_tenant=hidden)

    seen = cli("user", "info", other, BERTH_API_KEY=viewer_key)
    own = cli("user", "info", "me", BERTH_API_KEY=viewer_key)
    by_admin = cli("user", "info", other)

    assert seen.exit_code == 0, seen.output
    assert "Default tenant  set to a tenant you cannot see" in seen.stdout
    assert hidden not in seen.stdout
    assert "Password" not in seen.stdout
    assert "Password        not set" in own.stdout
    assert "Password        set" in by_admin.stdout
    assert f"Default tenant  {hidden}" in by_admin.stdout
