"""`berth login` and `berth logout`: save or remove the CLI profile."""

import sys
from typing import Annotated

import typer

from berth.cli.connection import ServerOption, TenantOption
from berth.cli.output import CliError, stdin_is_terminal
from berth.cli.profile import profile_path, save_profile
from berth.client import ApiError, Client


def login(
    server: ServerOption = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="BERTH_API_KEY",
            show_default=False,
            help="Platform API key to save. When it is missing, the command prompts for "
            "it on a terminal and reads the first line of stdin elsewhere.",
        ),
    ] = None,
    tenant: TenantOption = None,
) -> None:
    """Check a platform API key against the server and save it in the CLI profile.

    The profile is a JSON file with mode 0600 in $XDG_CONFIG_HOME/berth, or in
    ~/.config/berth when XDG_CONFIG_HOME is not set. Later commands read the server,
    key and tenant from it unless options or BERTH_* variables set them.
    """
    if not api_key and stdin_is_terminal():
        api_key = typer.prompt("Platform API key", hide_input=True, err=True)
    elif not api_key:
        # A script can pipe the key in, which keeps it out of the process list.
        api_key = sys.stdin.readline().strip()
        if not api_key:
            raise typer.BadParameter(
                "a platform API key is required; pass it, set BERTH_API_KEY or send it "
                "on the first line of stdin",
                param_hint="'--api-key'",
            )
    with Client(server=server, api_key=api_key, tenant=tenant) as client:
        try:
            identity = client.whoami()
        except ApiError as exc:
            if exc.status != 401:
                raise
            raise CliError(f"{exc.message}; check the key and log in again") from exc
        resolved_server = client.server
    try:
        path = save_profile(resolved_server, api_key, tenant)
    except OSError as exc:
        raise CliError(f"cannot write the CLI profile {profile_path()}: {exc}") from exc
    user_name = identity["user"]["name"]
    if identity["tenant"]:
        tenant_name = identity["tenant"]["name"]
        typer.echo(f"Logged in to {resolved_server} as {user_name} in tenant {tenant_name}.")
    else:
        typer.echo(f"Logged in to {resolved_server} as {user_name}, with no active tenant.")
        # Older servers do not send no_tenant_reason.
        reason = identity.get("no_tenant_reason") or "an admin can add you to a tenant"
        typer.echo(f"Note: {reason}.")
    typer.echo(f"Saved the profile to {path} (mode 0600).")


def logout() -> None:
    """Remove the CLI profile and the platform API key saved in it."""
    path = profile_path()
    try:
        path.unlink()
    except FileNotFoundError:
        typer.echo(f"No profile at {path}; nothing to remove.")
        return
    except OSError as exc:
        raise CliError(f"cannot remove the CLI profile {path}: {exc}") from exc
    typer.echo(f"Removed the profile {path}.")
