"""`berth user`: users, their passwords, roles and default tenant.

Creating, renaming, disabling and promoting users needs an OrgAdmin. Users may set their
own password and default tenant. Wherever a command names a user, `me` names you.
Passwords never go on the command line, where shell history would keep them: the
commands prompt for them or read them from stdin.
"""

import sys
from typing import Annotated

import typer

from berth.cli.connection import ApiKeyOption, ServerOption, TenantOption, connect
from berth.cli.output import (
    BerthGroup,
    CliError,
    Json,
    OutputFormat,
    OutputOption,
    TimeStyle,
    format_time,
    new_table,
    parse_role,
    print_fields,
    print_json,
    print_page_note,
    print_table,
    stdin_is_terminal,
)
from berth.states import Role

app = typer.Typer(
    cls=BerthGroup,
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="List, create and change users, their passwords and their default tenant.",
)

UserArgument = Annotated[
    str,
    typer.Argument(
        metavar="USER", show_default=False, help="User name or ID, or 'me' for yourself."
    ),
]
PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of stdin, for scripts.",
    ),
]


@app.command("list")
def list_users(
    limit: Annotated[int, typer.Option(min=1, help="Maximum number of users.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Number of users to skip.")] = 0,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """List users: every user for an OrgAdmin, the members of the active tenant for others."""
    with connect(server, api_key, tenant) as client:
        page = client.list_users(limit=limit, offset=offset)
    if output == OutputFormat.JSON:
        print_json(page)
        return
    if page["items"]:
        table = new_table("Name", "OrgAdmin", "Status", "Tenants (role)")
        for user in page["items"]:
            table.add_row(
                user["username"],
                "yes" if user["is_org_admin"] else "no",
                _status(user),
                _memberships_text(user) or "-",
            )
        print_table(table)
    print_page_note(page, "users")


@app.command()
def info(
    user: Annotated[
        str, typer.Argument(metavar="USER", help="User name or ID, or 'me' for yourself.")
    ] = "me",
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Show a user: status, OrgAdmin flag, tenants and roles, default tenant."""
    with connect(server, api_key, tenant) as client:
        data = client.get_user(user)
    _print_user(data, output)


@app.command()
def create(
    name: Annotated[
        str, typer.Argument(show_default=False, help="Name of the new user, unique in Berth.")
    ],
    password_prompt: Annotated[
        bool,
        typer.Option(
            "--password-prompt",
            help="Prompt for a password for web sign-in (10 characters or more).",
        ),
    ] = False,
    password_stdin: PasswordStdinOption = False,
    org_admin: Annotated[
        bool,
        typer.Option("--org-admin", help="Make the user an OrgAdmin, who may do everything."),
    ] = False,
    member_tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            show_default=False,
            help="Tenant name or ID to add the user to. The command also acts in this tenant.",
        ),
    ] = None,
    role: Annotated[
        Role | None,
        typer.Option(
            parser=parse_role,
            metavar="ROLE",
            show_default=False,
            help="Role of the user in --tenant: TenantAdmin or User. Defaults to User.",
        ),
    ] = None,
    create_key: Annotated[
        bool,
        typer.Option(
            "--create-key",
            help="Also create a platform API key for the user and print it. Berth shows "
            "the key only this once.",
        ),
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Create a user (OrgAdmin only).

    Without --password-prompt or --password-stdin, the user has no password and signs
    in with platform API keys only; `berth user set-password` sets one later.
    """
    if role is not None and member_tenant is None:
        raise typer.BadParameter("--role needs --tenant", param_hint="'--role'")
    password = _read_new_password(password_prompt, password_stdin)
    with connect(server, api_key, member_tenant) as client:
        data = client.create_user(
            name,
            password=password,
            is_org_admin=org_admin,
            tenant=member_tenant,
            role=role or Role.USER,
            create_key=create_key,
        )
    if output == OutputFormat.JSON:
        print_json(data)
        return
    typer.echo(f"Created user {data['username']}.")
    typer.echo()
    _print_user(data, output)
    if data["api_key"]:
        typer.echo()
        print_fields([("Platform API key", data["api_key"])])
        typer.echo("Save this key now: Berth stores only a hash of it and shows it only this once.")


@app.command()
def rename(
    user: UserArgument,
    new_name: Annotated[str, typer.Argument(show_default=False, help="New name of the user.")],
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Rename a user (OrgAdmin only). Their ID, keys and memberships stay the same."""
    with connect(server, api_key, tenant) as client:
        data = client.update_user(user, username=new_name)
    _print_change(f"Renamed user {user} to {data['username']}.", data, output)


@app.command()
def disable(
    user: UserArgument,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Disable a user (OrgAdmin only): their platform API keys and sign-in stop working.

    `berth user enable` undoes this.
    """
    with connect(server, api_key, tenant) as client:
        data = client.update_user(user, disabled=True)
    _print_change(f"Disabled user {data['username']}.", data, output)


@app.command()
def enable(
    user: UserArgument,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Enable a disabled user again (OrgAdmin only)."""
    with connect(server, api_key, tenant) as client:
        data = client.update_user(user, disabled=False)
    _print_change(f"Enabled user {data['username']}.", data, output)


@app.command("set-org-admin")
def set_org_admin(
    user: UserArgument,
    on: Annotated[
        bool | None,
        typer.Option(
            "--on/--off",
            show_default=False,
            help="Make the user an OrgAdmin, or take the OrgAdmin role away.",
        ),
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Give or take away the OrgAdmin role (OrgAdmin only). You cannot drop your own."""
    if on is None:
        raise typer.BadParameter("pass --on or --off", param_hint="'--on/--off'")
    with connect(server, api_key, tenant) as client:
        data = client.update_user(user, is_org_admin=on)
    state = "now an OrgAdmin" if data["is_org_admin"] else "no longer an OrgAdmin"
    _print_change(f"User {data['username']} is {state}.", data, output)


@app.command("set-password")
def set_password(
    user: Annotated[
        str,
        typer.Argument(
            metavar="USER",
            help="User name or ID. Only an OrgAdmin may set another user's password.",
        ),
    ] = "me",
    password_stdin: PasswordStdinOption = False,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Set the password for web sign-in (10 characters or more).

    On a terminal, the command prompts for the password twice. When stdin is not a
    terminal, or with --password-stdin, it reads the first line of stdin. The user's web
    sessions end, so every browser has to sign in again. Platform API keys keep working.
    """
    use_prompt = stdin_is_terminal() and not password_stdin
    password = _read_new_password(use_prompt, not use_prompt) or ""
    with connect(server, api_key, tenant) as client:
        data = client.update_user(user, password=password)
    message = (
        f"Set the password of user {data['username']}. The user's web sessions have ended, "
        "so each browser signs in again; platform API keys keep working."
    )
    _print_change(message, data, output)


@app.command("set-default-tenant")
def set_default_tenant(
    default_tenant: Annotated[
        str,
        typer.Argument(
            metavar="TENANT",
            show_default=False,
            help="Tenant name or ID; the user must be a member of it.",
        ),
    ],
    user: Annotated[
        str,
        typer.Option(
            "--user",
            help="User name or ID. Only an OrgAdmin may set another user's default tenant.",
        ),
    ] = "me",
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Set the tenant a user acts in when neither --tenant, BERTH_TENANT nor the CLI
    profile names one."""
    with connect(server, api_key, tenant) as client:
        data = client.update_user(user, default_tenant=default_tenant)
    message = f"The default tenant of user {data['username']} is now {_default_tenant_text(data)}."
    _print_change(message, data, output)


def _read_new_password(prompt: bool, from_stdin: bool) -> str | None:
    """Return the password from a prompt or from stdin's first line, or None for neither."""
    if prompt and from_stdin:
        raise typer.BadParameter(
            "pass either --password-prompt or --password-stdin, not both",
            param_hint="'--password-stdin'",
        )
    if prompt:
        password: str = typer.prompt(
            "New password", hide_input=True, confirmation_prompt=True, err=True
        )
        return password
    if not from_stdin:
        return None
    # Only the line ending is removed, since spaces may belong to the password.
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CliError("no password on stdin: write the password as its first line")
    return password


def _status(user: Json) -> str:
    return "disabled" if user["disabled"] else "enabled"


def _memberships_text(user: Json) -> str:
    return ", ".join(
        f"{membership['tenant']['name']} ({membership['role']})"
        for membership in user["memberships"]
    )


def _default_tenant_text(user: Json) -> str:
    tenant_id = user["default_tenant_id"]
    if user.get("default_tenant_hidden"):
        return "set to a tenant you cannot see"
    if tenant_id is None:
        return "not set"
    name = str(tenant_id)
    for membership in user["memberships"]:
        if membership["tenant"]["id"] == tenant_id:
            name = str(membership["tenant"]["name"])
    if user.get("default_tenant_disabled"):
        return f"{name} (disabled: not used until an OrgAdmin enables it)"
    return name


def _print_change(message: str, user: Json, output: OutputFormat) -> None:
    if output == OutputFormat.TABLE:
        typer.echo(message)
        typer.echo()
    _print_user(user, output)


def _print_user(user: Json, output: OutputFormat) -> None:
    if output == OutputFormat.JSON:
        print_json(user)
        return
    fields = [
        ("Name", user["username"]),
        ("ID", user["id"]),
        ("Status", _status(user)),
        ("OrgAdmin", "yes" if user["is_org_admin"] else "no"),
    ]
    # The server sends null to callers who may not see whether another user has one.
    if user["has_password"] is not None:
        fields.append(("Password", "set" if user["has_password"] else "not set"))
    fields += [
        ("Default tenant", _default_tenant_text(user)),
        ("Created", format_time(user["created_at"], style=TimeStyle.FULL)),
    ]
    print_fields(fields)
    if user["memberships"]:
        typer.echo()
        table = new_table("Tenant", "Role")
        for membership in user["memberships"]:
            table.add_row(membership["tenant"]["name"], membership["role"])
        print_table(table)
