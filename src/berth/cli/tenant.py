"""`berth tenant`: tenants and their members.

Creating, renaming, disabling and enabling tenants needs an OrgAdmin. Changing members
needs a TenantAdmin of the tenant or an OrgAdmin. The commands print the server's
message when it rejects a request.
"""

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
    cli_names_in_errors,
    confirm_on_terminal,
    format_time,
    new_table,
    parse_role,
    print_fields,
    print_json,
    print_page_note,
    print_table,
)
from berth.client import Client
from berth.states import Role

app = typer.Typer(
    cls=BerthGroup,
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="List, create, rename, disable and enable tenants, and manage their members.",
)

# The API's errors call the tenant name `name`, which these commands take as an argument.
_TENANT_NAME = {"name": "tenant name"}

TenantArgument = Annotated[
    str, typer.Argument(metavar="TENANT", show_default=False, help="Tenant name or ID.")
]
UserArgument = Annotated[
    str,
    typer.Argument(
        metavar="USER", show_default=False, help="User name or ID, or 'me' for yourself."
    ),
]
RoleOption = Annotated[
    Role,
    typer.Option(
        "--role",
        parser=parse_role,
        metavar="ROLE",
        show_default=False,
        help="Role in the tenant: TenantAdmin manages the tenant's members and everything "
        "in it, User works in it.",
    ),
]


@app.command("list")
def list_tenants(
    limit: Annotated[int, typer.Option(min=1, help="Maximum number of tenants.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Number of tenants to skip.")] = 0,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """List your tenants with your role in each. For an OrgAdmin, list every tenant."""
    with connect(server, api_key, tenant) as client:
        page = client.list_tenants(limit=limit, offset=offset)
    if output == OutputFormat.JSON:
        print_json(page)
        return
    if page["items"]:
        table = new_table("Name", "Status", "Your role", "Created")
        for row in page["items"]:
            table.add_row(
                row["name"],
                _status(row),
                row["role"] or "-",
                format_time(row["created_at"], style=TimeStyle.MINUTES),
            )
        print_table(table)
    print_page_note(page, "tenants")


@app.command()
def info(
    tenant_ref: TenantArgument,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Show a tenant."""
    with connect(server, api_key, tenant) as client:
        data = client.get_tenant(tenant_ref)
    _print_tenant(data, output)


@app.command()
def create(
    name: Annotated[
        str, typer.Argument(show_default=False, help="Name of the new tenant, unique in Berth.")
    ],
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Create a tenant with a project named default (OrgAdmin only).

    You become the new tenant's TenantAdmin; `berth tenant add-member` adds others.
    """
    with connect(server, api_key, tenant) as client, cli_names_in_errors(_TENANT_NAME):
        data = client.create_tenant(name)
    if output == OutputFormat.TABLE:
        typer.echo(f"Created tenant {data['name']} with project default.")
        typer.echo()
    _print_tenant(data, output)


@app.command()
def rename(
    tenant_ref: TenantArgument,
    new_name: Annotated[str, typer.Argument(show_default=False, help="New name of the tenant.")],
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Rename a tenant (OrgAdmin only). Its ID stays the same."""
    with connect(server, api_key, tenant) as client, cli_names_in_errors(_TENANT_NAME):
        data = client.update_tenant(tenant_ref, name=new_name)
    if output == OutputFormat.TABLE:
        typer.echo(f"Renamed tenant {tenant_ref} to {data['name']}.")
        typer.echo()
    _print_tenant(data, output)


@app.command()
def disable(
    tenant_ref: TenantArgument,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Disable a tenant (OrgAdmin only): its members can no longer act in it.

    The gateway rejects requests to the tenant's endpoints with 403 (tenant_disabled).
    Their instances keep running, so `berth tenant enable` restores service at once;
    stop the endpoints to free their resources.
    """
    with connect(server, api_key, tenant) as client:
        data = client.update_tenant(tenant_ref, disabled=True)
    if output == OutputFormat.TABLE:
        typer.echo(f"Disabled tenant {data['name']}.")
        typer.echo()
    _print_tenant(data, output)


@app.command()
def enable(
    tenant_ref: TenantArgument,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Enable a disabled tenant again (OrgAdmin only)."""
    with connect(server, api_key, tenant) as client:
        data = client.update_tenant(tenant_ref, disabled=False)
    if output == OutputFormat.TABLE:
        typer.echo(f"Enabled tenant {data['name']}.")
        typer.echo()
    _print_tenant(data, output)


@app.command()
def members(
    tenant_ref: TenantArgument,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """List the members of a tenant and their roles."""
    with connect(server, api_key, tenant) as client:
        rows = client.list_members(tenant_ref)
    if output == OutputFormat.JSON:
        print_json(rows)
        return
    if not rows:
        typer.echo("No members found.")
        return
    table = new_table("User", "Role")
    for row in rows:
        table.add_row(row["user"]["name"], row["role"])
    print_table(table)


@app.command("add-member")
def add_member(
    tenant_ref: TenantArgument,
    user: UserArgument,
    role: RoleOption = Role.USER,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Add a user to a tenant (TenantAdmin of the tenant or OrgAdmin).

    Adding a member again with the same role changes nothing. To change the role of a
    member, use `berth tenant set-role`.
    """
    with connect(server, api_key, tenant) as client:
        current = _find_membership(client, tenant_ref, user)
        if current is not None and current["role"] != role:
            raise CliError(
                f"user '{current['user']['name']}' is already a member of tenant "
                f"'{current['tenant']['name']}' with role {current['role']}; use "
                "`berth tenant set-role` to change it"
            )
        data = client.set_member(tenant_ref, user, role)
    if output == OutputFormat.JSON:
        print_json(data)
    elif current is not None:
        typer.echo(
            f"{data['user']['name']} is already a member of tenant {data['tenant']['name']} "
            f"with role {data['role']}."
        )
    else:
        typer.echo(
            f"Added {data['user']['name']} to tenant {data['tenant']['name']} "
            f"with role {data['role']}."
        )


@app.command("set-role")
def set_role(
    tenant_ref: TenantArgument,
    user: UserArgument,
    role: RoleOption,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Change the role of a member of a tenant (TenantAdmin of the tenant or OrgAdmin)."""
    with connect(server, api_key, tenant) as client:
        if _find_membership(client, tenant_ref, user) is None:
            raise CliError(
                f"user '{user}' is not a member of tenant '{tenant_ref}'; "
                "use `berth tenant add-member` to add them"
            )
        data = client.set_member(tenant_ref, user, role)
    if output == OutputFormat.JSON:
        print_json(data)
    else:
        typer.echo(
            f"{data['user']['name']} now has role {data['role']} "
            f"in tenant {data['tenant']['name']}."
        )


@app.command("remove-member")
def remove_member(
    tenant_ref: TenantArgument,
    user: UserArgument,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Remove without asking for confirmation.")
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Remove a user from a tenant (TenantAdmin of the tenant or OrgAdmin).

    The user keeps their account and their other tenants. On a terminal, the command
    prompts for confirmation unless --yes is given. With -o json it prints the
    membership as it was before the removal.
    """
    with connect(server, api_key, tenant) as client:
        current = _find_membership(client, tenant_ref, user)
        if current is None:
            raise CliError(f"user '{user}' is not a member of tenant '{tenant_ref}'")
        confirm_on_terminal(
            f"Remove '{current['user']['name']}' from tenant '{current['tenant']['name']}'?", yes
        )
        client.remove_member(tenant_ref, user)
    if output == OutputFormat.JSON:
        print_json(current)
    else:
        typer.echo(f"Removed {current['user']['name']} from tenant {current['tenant']['name']}.")


def _find_membership(client: Client, tenant_ref: str, user: str) -> Json | None:
    """Return the membership of `user` (name, ID or 'me') in the tenant, or None."""
    reference = user.strip()
    if reference.lower() == "me":
        reference = client.whoami()["user"]["id"]
    for row in client.list_members(tenant_ref):
        if reference == row["user"]["id"] or reference.lower() == row["user"]["name"].lower():
            return row
    return None


def _status(tenant: Json) -> str:
    return "disabled" if tenant["disabled"] else "enabled"


def _print_tenant(tenant: Json, output: OutputFormat) -> None:
    if output == OutputFormat.JSON:
        print_json(tenant)
        return
    print_fields(
        [
            ("Name", tenant["name"]),
            ("ID", tenant["id"]),
            ("Status", _status(tenant)),
            ("Your role", tenant["role"] or "none (OrgAdmin)"),
            ("Created", format_time(tenant["created_at"])),
        ]
    )
