"""`berth project`: list, create, show, change and delete projects of the tenant."""

from typing import Annotated

import typer

from berth.cli.connection import ApiKeyOption, ServerOption, TenantOption, connect
from berth.cli.output import (
    BerthGroup,
    Json,
    OutputFormat,
    OutputOption,
    TimeStyle,
    cli_names_in_errors,
    confirm_on_terminal,
    format_time,
    new_table,
    print_fields,
    print_json,
    print_page_note,
    print_table,
)

app = typer.Typer(
    cls=BerthGroup,
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="List, create, show, change and delete projects.",
)

ProjectArgument = Annotated[str, typer.Argument(show_default=False, help="Project name or ID.")]


@app.command("list")
def list_projects(
    limit: Annotated[int, typer.Option(min=1, help="Maximum number of projects.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Number of projects to skip.")] = 0,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """List the projects of the tenant."""
    with connect(server, api_key, tenant) as client:
        page = client.list_projects(limit=limit, offset=offset)
    if output == OutputFormat.JSON:
        print_json(page)
        return
    if page["items"]:
        table = new_table("Name", "Description", "Owner", "Created")
        for project in page["items"]:
            table.add_row(
                project["name"],
                project["description"],
                project["owner"]["name"],
                format_time(project["created_at"], style=TimeStyle.MINUTES),
            )
        print_table(table)
    print_page_note(page, "projects")


@app.command()
def create(
    name: Annotated[
        str, typer.Argument(show_default=False, help="Project name, unique in the tenant.")
    ],
    description: Annotated[str, typer.Option(help="Description of the project.")] = "",
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Create a project in the tenant."""
    with connect(server, api_key, tenant) as client, cli_names_in_errors({"name": "project name"}):
        data = client.create_project(name, description)
    if output == OutputFormat.JSON:
        print_json(data)
    else:
        typer.echo(f"Created project {data['name']} in tenant {data['tenant']['name']}.")
        typer.echo()
        _print_project(data)


@app.command()
def info(
    project: ProjectArgument,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Show a project."""
    with connect(server, api_key, tenant) as client:
        data = client.get_project(project)
    if output == OutputFormat.JSON:
        print_json(data)
    else:
        _print_project(data)


@app.command()
def update(
    project: ProjectArgument,
    name: Annotated[
        str | None,
        typer.Option("--name", show_default=False, help="New project name, unique in the tenant."),
    ] = None,
    description: Annotated[
        str | None,
        typer.Option(show_default=False, help="New description of the project."),
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Rename a project or change its description.

    Only the project's owner, a TenantAdmin of its tenant or an OrgAdmin may. The
    `default` project keeps its name, because new endpoints go into it when no project
    is given.
    """
    if name is None and description is None:
        raise typer.BadParameter("nothing to update; pass --name or --description")
    with connect(server, api_key, tenant) as client, cli_names_in_errors({"name": "--name"}):
        data = client.update_project(project, name=name, description=description)
    if output == OutputFormat.JSON:
        print_json(data)
    else:
        _print_project(data)


@app.command()
def delete(
    project: ProjectArgument,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking for confirmation.")
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Delete a project that contains no endpoints.

    The server rejects this while the project contains endpoints, stopped ones included,
    and for the `default` project. On a terminal, the command prompts for confirmation
    unless --yes is given. With -o json it prints the project as it was before the
    deletion.
    """
    with connect(server, api_key, tenant) as client:
        data = client.get_project(project)
        confirm_on_terminal(f"Delete project '{data['name']}'?", yes)
        client.delete_project(data["id"])
    if output == OutputFormat.JSON:
        print_json(data)
    else:
        typer.echo(f"Deleted project {data['name']} from tenant {data['tenant']['name']}.")


def _print_project(project: Json) -> None:
    print_fields(
        [
            ("Name", project["name"]),
            ("ID", project["id"]),
            ("Description", project["description"] or "-"),
            ("Tenant", project["tenant"]["name"]),
            ("Owner", project["owner"]["name"]),
            ("Version", str(project["version"])),
            ("Created", format_time(project["created_at"])),
        ]
    )
