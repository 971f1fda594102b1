"""Connection options that every management command accepts, and the client they build."""

from typing import Annotated

import typer

from berth.cli.output import CliError
from berth.client import Client

CONNECTION_PANEL = "Connection"

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="BERTH_SERVER",
        show_default=False,
        rich_help_panel=CONNECTION_PANEL,
        help="URL of the Berth server. Defaults to the profile, then http://127.0.0.1:8080.",
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="BERTH_API_KEY",
        show_default=False,
        rich_help_panel=CONNECTION_PANEL,
        help="Platform API key. Defaults to the profile that `berth login` saves.",
    ),
]
TenantOption = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        envvar="BERTH_TENANT",
        show_default=False,
        rich_help_panel=CONNECTION_PANEL,
        help="Tenant to act in. Defaults to the profile, then the key's own tenant.",
    ),
]


def connect(server: str | None, api_key: str | None, tenant: str | None) -> Client:
    """Build a client from the options, falling back to the environment and the profile.

    Raises CliError when no API key is found anywhere or the profile is unreadable.
    """
    try:
        client = Client(server=server, api_key=api_key, tenant=tenant)
    except RuntimeError as exc:
        # load_profile raises RuntimeError for a profile it cannot read or parse.
        raise CliError(str(exc)) from exc
    if not client.api_key:
        client.close()
        raise CliError(
            "missing platform API key: run `berth login`, set BERTH_API_KEY or pass --api-key"
        )
    return client
