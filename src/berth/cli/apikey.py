"""`berth endpoint *-apikey`: list, add, edit, revoke and show endpoint API keys.

The server creates the first key (FirstKey) with each endpoint and rejects edits and
revocation of it. The commands print the server's message when it does.
"""

from typing import Annotated

import typer

from berth.cli.connection import ApiKeyOption, ServerOption, TenantOption, connect
from berth.cli.endpoint_options import (
    ApiKeyIdOption,
    EndpointArgument,
    EndpointOption,
    ProjectOption,
    pick_endpoint,
)
from berth.cli.endpoint_views import print_key, print_key_list
from berth.cli.output import (
    Json,
    OutputFormat,
    OutputOption,
    confirm_on_terminal,
    format_time,
    print_json,
)

KeyDescriptionOption = Annotated[
    str, typer.Option("--description", help="Description that identifies the key.")
]


def list_apikeys(
    endpoint_argument: EndpointArgument = None,
    endpoint: EndpointOption = None,
    project: ProjectOption = None,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """List every API key of an endpoint, revoked ones included."""
    reference = pick_endpoint(endpoint_argument, endpoint)
    with connect(server, api_key, tenant) as client:
        keys = client.list_keys(reference, project)
    if output == OutputFormat.JSON:
        print_json(keys)
    else:
        print_key_list(keys)


def add_apikey(
    # Required: the server rejects a key without a description.
    description: KeyDescriptionOption,
    endpoint_argument: EndpointArgument = None,
    endpoint: EndpointOption = None,
    project: ProjectOption = None,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Add an API key to an endpoint and print it."""
    reference = pick_endpoint(endpoint_argument, endpoint)
    with connect(server, api_key, tenant) as client:
        key = client.add_key(reference, description, project)
    _print_key(key, output)


def edit_apikey(
    description: Annotated[
        str,
        typer.Option("--description", show_default=False, help="New description of the key."),
    ],
    apikey: ApiKeyIdOption,
    endpoint_argument: EndpointArgument = None,
    endpoint: EndpointOption = None,
    project: ProjectOption = None,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Change the description of an endpoint API key. FirstKey cannot be edited."""
    reference = pick_endpoint(endpoint_argument, endpoint)
    with connect(server, api_key, tenant) as client:
        key = client.edit_key(reference, apikey, description, project)
    _print_key(key, output)


def revoke_apikey(
    apikey: ApiKeyIdOption,
    endpoint_argument: EndpointArgument = None,
    endpoint: EndpointOption = None,
    project: ProjectOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Revoke without asking for confirmation.")
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Revoke an endpoint API key for good. FirstKey cannot be revoked.

    On a terminal, the command prompts for confirmation unless --yes is given. When stdin
    is not a terminal, as in scripts, it revokes without asking. Revoking a revoked key
    changes nothing, says so, and exits with status 0 (`already_revoked` in -o json).
    """
    reference = pick_endpoint(endpoint_argument, endpoint)
    with connect(server, api_key, tenant) as client:
        confirm_on_terminal(
            f"Revoke API key '{apikey}' of endpoint '{reference}'? This cannot be undone.", yes
        )
        key = client.revoke_key(reference, apikey, project)
    if output == OutputFormat.TABLE and key.get("already_revoked"):
        typer.echo(
            f"API key {key['id']} was already revoked at {format_time(key['revoked_at'])}; "
            "nothing changed."
        )
        typer.echo()
    _print_key(key, output)


def info_apikey(
    apikey: ApiKeyIdOption,
    endpoint_argument: EndpointArgument = None,
    endpoint: EndpointOption = None,
    project: ProjectOption = None,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Show an endpoint API key: its status, description and owner."""
    reference = pick_endpoint(endpoint_argument, endpoint)
    with connect(server, api_key, tenant) as client:
        key = client.get_key(reference, apikey, project)
    _print_key(key, output)


def _print_key(key: Json, output: OutputFormat) -> None:
    if output == OutputFormat.JSON:
        print_json(key)
    else:
        print_key(key)
