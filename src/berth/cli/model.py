"""`berth model`: browse the Model Hub."""

from typing import Annotated

import typer

from berth.cli.connection import ApiKeyOption, ServerOption, TenantOption, connect
from berth.cli.output import (
    BerthGroup,
    Json,
    OutputFormat,
    OutputOption,
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
    help="Browse the models of the Model Hub.",
)


@app.command("list")
def list_models(
    ml_app: Annotated[
        str | None,
        typer.Option(
            "--ml-app",
            show_default=False,
            help="List only models of this ML App, such as text-generation, "
            "text-embedding or echo.",
        ),
    ] = None,
    architecture: Annotated[
        str | None,
        typer.Option(show_default=False, help="List only this architecture, such as BertModel."),
    ] = None,
    field_of_application: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="List only this field of application, such as Language.",
        ),
    ] = None,
    base: Annotated[
        bool | None,
        typer.Option(
            "--base/--no-base",
            show_default=False,
            help="List only base models, which cannot be deployed, or only the other models.",
        ),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="List only models whose name or description contains this text.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Maximum number of models.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Number of models to skip.")] = 0,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """List the models of the Model Hub, with optional filters."""
    with connect(server, api_key, tenant) as client:
        page = client.list_models(
            limit=limit, offset=offset, ml_app=ml_app, architecture=architecture,
            field_of_application=field_of_application, base=base, search=search,
        )
    if output == OutputFormat.JSON:
        print_json(page)
        return
    if page["items"]:
        table = new_table("Name", "ML App", "Architecture", "Field", "Base")
        for model in page["items"]:
            table.add_row(
                model["name"],
                model["ml_app_name"],
                model["architecture"],
                model["field_of_application"],
                "yes" if model["is_base"] else "no",
            )
        print_table(table)
    print_page_note(page, "models")


@app.command()
def info(
    model: Annotated[str, typer.Argument(show_default=False, help="Model name or ID.")],
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Show a model of the Model Hub."""
    with connect(server, api_key, tenant) as client:
        data = client.get_model(model)
    if output == OutputFormat.JSON:
        print_json(data)
    else:
        _print_model(data)


def _print_model(model: Json) -> None:
    owner = model["owner"]["name"] if model["owner"] else "built in"
    print_fields([
        ("Name", model["name"]),
        ("ID", model["id"]),
        ("Description", model["description"] or "-"),
        ("ML App", f"{model['ml_app_name']} ({model['ml_app']})"),
        ("Architecture", model["architecture"]),
        ("Field", model["field_of_application"]),
        ("Base model", "yes, for training only" if model["is_base"] else "no"),
        ("Owner", owner),
        ("Created", format_time(model["created_at"])),
    ])
