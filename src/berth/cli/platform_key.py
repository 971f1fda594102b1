"""`berth platform-key`: list, create and revoke platform API keys.

A platform API key authenticates a user to the management API and this CLI. It is a
different thing from an endpoint API key (`berth endpoint *-apikey`), which authorizes
prediction requests to one endpoint.
"""

from typing import Annotated

import typer
from rich.table import Column

from berth.cli.connection import ApiKeyOption, ServerOption, TenantOption, connect
from berth.cli.output import (
    BerthGroup,
    CliError,
    Json,
    OutputFormat,
    OutputOption,
    confirm_on_terminal,
    format_time,
    new_table,
    print_fields,
    print_json,
    print_table,
)
from berth.client import Client
from berth.secrets import PLATFORM_KEY_PREFIX

# The number of leading characters of a key that the server stores and lists as its prefix.
SHOWN_KEY_LENGTH = 14

app = typer.Typer(
    cls=BerthGroup,
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="List, create and revoke platform API keys, your keys for the management API "
    "and this CLI.\n\n"
    "These are not endpoint API keys: those authorize prediction requests to one "
    "endpoint and are managed with `berth endpoint *-apikey`.",
)

UserOption = Annotated[
    str,
    typer.Option(
        "--user",
        help="User name or ID whose keys to manage. Only an OrgAdmin may manage another "
        "user's keys.",
    ),
]


@app.command("list")
def list_keys(
    user: UserOption = "me",
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """List the platform API keys of a user, revoked ones included.

    The list shows each key's first characters only: Berth keeps no copy of the key.
    """
    with connect(server, api_key, tenant) as client:
        keys = client.list_platform_keys(user)
    if output == OutputFormat.JSON:
        print_json(keys)
        return
    if not keys:
        typer.echo("No platform API keys found.")
        return
    # The ID stays on one line so that it copies whole for `revoke`.
    table = new_table(Column("ID", no_wrap=True), "Key", "Status", "Description")
    for key in keys:
        table.add_row(key["id"], _prefix_text(key), _status(key), key["description"])
    print_table(table)


@app.command()
def create(
    description: Annotated[
        str, typer.Option("--description", help="Description that identifies the key.")
    ] = "",
    user: UserOption = "me",
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Create a platform API key and print it. Berth shows the key only this once."""
    with connect(server, api_key, tenant) as client:
        key = client.create_platform_key(description, user)
    if output == OutputFormat.JSON:
        print_json(key)
        return
    print_fields(
        [
            ("ID", key["id"]),
            ("Key", key["key"]),
            ("Description", key["description"] or "-"),
            ("Created", format_time(key["created_at"])),
        ]
    )
    typer.echo()
    typer.echo("Save this key now: Berth stores only a hash of it and shows it only this once.")


@app.command()
def revoke(
    key_ref: Annotated[
        str,
        typer.Argument(
            metavar="KEY_ID",
            show_default=False,
            help="ID of the key from `berth platform-key list`, a unique start of the ID "
            "(4 characters or more), or the key itself.",
        ),
    ],
    user: UserOption = "me",
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Revoke without asking for confirmation.")
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Revoke a platform API key for good; requests with it fail from then on.

    On a terminal, the command prompts for confirmation unless --yes is given. When stdin
    is not a terminal, as in scripts, it revokes without asking. Revoking a revoked key
    changes nothing, says so, and exits with status 0 (`already_revoked` in -o json).
    """
    with connect(server, api_key, tenant) as client:
        key_id = _key_id(client, key_ref, user)
        confirm_on_terminal(f"Revoke platform API key '{key_id}'? This cannot be undone.", yes)
        key = client.revoke_platform_key(key_id, user)
    if output == OutputFormat.JSON:
        print_json(key)
        return
    if key.get("already_revoked"):
        typer.echo(
            f"Platform API key {key['id']} was already revoked at "
            f"{format_time(key['revoked_at'])}; nothing changed."
        )
        return
    typer.echo(f"Revoked platform API key {key['id']}.")


def _key_id(client: Client, key_ref: str, user: str) -> str:
    """Return the ID of the key that `key_ref` refers to: an ID, the key, or its shown prefix."""
    key_ref = key_ref.strip()
    if not key_ref.startswith(PLATFORM_KEY_PREFIX):
        return key_ref
    # The list shows the prefix with a trailing ellipsis; accept it as copied.
    text = key_ref.removesuffix("…").removesuffix("...")
    matches = [
        key
        for key in client.list_platform_keys(user)
        if key["prefix"] and (text.startswith(key["prefix"]) or key["prefix"].startswith(text))
    ]
    if not matches:
        raise CliError(f"platform API key '{_shown(text)}' not found")
    if len(matches) > 1:
        raise CliError(
            f"several platform API keys start with '{_shown(text)}'; pass the key ID "
            "from `berth platform-key list`"
        )
    return str(matches[0]["id"])


def _shown(text: str) -> str:
    """Return at most the part of a key that `list` shows, so errors never echo a whole key."""
    if len(text) <= SHOWN_KEY_LENGTH:
        return text
    return text[:SHOWN_KEY_LENGTH] + "…"


def _prefix_text(key: Json) -> str:
    # The admin key created at first start has no stored prefix.
    return f"{key['prefix']}…" if key["prefix"] else "-"


def _status(key: Json) -> str:
    return "Revoked" if key["revoked_at"] else "Active"
