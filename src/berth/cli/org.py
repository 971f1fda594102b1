"""`berth org`: organization-wide settings."""

from typing import Annotated

import typer

from berth.cli.connection import ApiKeyOption, ServerOption, TenantOption, connect
from berth.cli.output import (
    BerthGroup,
    Json,
    OutputFormat,
    OutputOption,
    print_fields,
    print_json,
)

app = typer.Typer(
    cls=BerthGroup,
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="Show and change organization-wide settings.",
)


@app.command()
def show(
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Show the organization's settings."""
    with connect(server, api_key, tenant) as client:
        data = client.get_organization()
    if output == OutputFormat.JSON:
        print_json(data)
        return
    print_fields([("Sharing with all tenants", _on_off(data["share_with_all_tenants"]))])


@app.command("set-sharing")
def set_sharing(
    on: Annotated[
        bool | None,
        typer.Option(
            "--on/--off",
            show_default=False,
            help="Allow endpoints and models to be shared with all tenants, or allow "
            "sharing with their own tenant only.",
        ),
    ] = None,
    unshare_existing: Annotated[
        bool,
        typer.Option(
            "--unshare-existing",
            help="With --off, also share every endpoint and model that is shared with all "
            "tenants with its own tenant only.",
        ),
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Turn sharing with all tenants on or off (OrgAdmin only).

    Turning it off keeps endpoints and models that are shared with all tenants shared,
    unless --unshare-existing is given. The command lists them either way.
    """
    if on is None:
        raise typer.BadParameter("pass --on or --off", param_hint="'--on/--off'")
    if on and unshare_existing:
        raise typer.BadParameter(
            "--unshare-existing works only with --off", param_hint="'--unshare-existing'"
        )
    with connect(server, api_key, tenant) as client:
        data = client.set_sharing(on, unshare_existing)
    if output == OutputFormat.JSON:
        print_json(data)
        return
    typer.echo(_sentence(data["message"]))
    if data["unshared"]:
        heading = "{}, now shared with their own tenant only:"
    else:
        heading = "{} still shared with all tenants:"
    _print_references(heading.format("Endpoints"), data["endpoints_shared"])
    _print_references(heading.format("Models"), data["models_shared"])
    if not data["unshared"] and (data["endpoints_shared"] or data["models_shared"]):
        typer.echo()
        typer.echo(
            "`berth org set-sharing --off --unshare-existing` shares them with their own "
            "tenant only."
        )


def _print_references(heading: str, references: list[Json]) -> None:
    if not references:
        return
    typer.echo()
    typer.echo(heading)
    for reference in references:
        typer.echo(f"  {reference['name']}  ({reference['id']})")


def _sentence(message: str) -> str:
    """Return the server's message with a capital first letter and a full stop."""
    text = message[:1].upper() + message[1:]
    return text if text.endswith(".") else f"{text}."


def _on_off(value: bool) -> str:
    return "on" if value else "off"
