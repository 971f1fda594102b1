"""`berth project`: list, create and show projects of the tenant."""

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
    help="List, create and show projects.",
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


def _print_project(project: Json) -> None:
    print_fields(
        [
            ("Name", project["name"]),
            ("ID", project["id"]),
            ("Description", project["description"] or "-"),
            ("Tenant", project["tenant"]["name"]),
            ("Owner", project["owner"]["name"]),
            ("Created", format_time(project["created_at"])),
        ]
    )
