"""`berth audit`: read the audit log of management actions.

OrgAdmins read every tenant's entries, TenantAdmins their active tenant's, and other
users their own entries in their active tenant.
"""

import json
import re
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.table import Column, Table
from rich.text import Text

from berth.cli.connection import ApiKeyOption, ServerOption, connect
from berth.cli.output import (
    BerthGroup,
    CliError,
    Json,
    OutputFormat,
    OutputOption,
    escape_control_characters,
    format_time,
    new_table,
    print_json,
    print_page_note,
    print_table,
)

ALL_TENANTS = "all"
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

app = typer.Typer(
    cls=BerthGroup,
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="Read the audit log of management actions.",
)


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """Parse a time given on the command line into an aware datetime.

    Accepts ISO 8601 (`2025-03-01`, `2025-03-01 14:30`, `2025-03-01T14:30:00+00:00`),
    where a time without a zone is local time, or a duration back from `now`, such as
    `90s`, `15m`, `2h`, `7d` or `1w`. Raises ValueError for anything else.
    """
    text = text.strip()
    match = _DURATION.fullmatch(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        start = now or datetime.now().astimezone()
        return start - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid time '{text}': use a date and time such as '2025-03-01 14:30' "
            "(local time unless it has a zone) or a duration back from now such as "
            "'15m', '2h' or '7d'"
        ) from None
    # astimezone() reads a time without a zone as local time.
    return moment.astimezone()


def _time_option(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("list")
def list_entries(
    action: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="List only actions that start with this text, such as 'endpoint.' or "
            "'key.revoked'.",
        ),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(
            show_default=False, help="List only actions of this user name, or 'me' for yours."
        ),
    ] = None,
    resource_id: Annotated[
        str | None,
        typer.Option(
            "--resource-id",
            show_default=False,
            help="List only actions on the resource with this ID.",
        ),
    ] = None,
    resource_type: Annotated[
        str | None,
        typer.Option(
            "--resource-type",
            show_default=False,
            help="List only actions on this type of resource, such as endpoint, key, "
            "model, user or tenant.",
        ),
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            parser=_time_option,
            metavar="TIME",
            show_default=False,
            help="List only actions at or after this time: a date and time such as "
            "'2025-03-01 14:30' (local time unless it has a zone), or a duration back "
            "from now such as '15m', '2h' or '7d'.",
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(
            parser=_time_option,
            metavar="TIME",
            show_default=False,
            help="List only actions before this time, written as for --since.",
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            show_default=False,
            help="Tenant name or ID whose entries to list, and to act in. OrgAdmins may "
            "pass 'all' for the entries of every tenant and of the organization.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Maximum number of entries.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Number of entries to skip.")] = 0,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List audit entries, newest first, with optional filters.

    Without --tenant, an OrgAdmin gets the entries of the active tenant and those of
    the organization itself, such as user and sharing changes.
    """
    every_tenant = tenant is not None and tenant.strip().lower() == ALL_TENANTS
    with connect(server, api_key, None if every_tenant else tenant) as client:
        if every_tenant and not client.whoami()["is_org_admin"]:
            # The API ignores tenant=all for other users and lists their active tenant.
            raise CliError(
                "only an OrgAdmin may list the audit entries of all tenants; "
                "leave out --tenant all to list those of your active tenant"
            )
        if actor is not None and actor.strip().lower() == "me":
            actor = client.whoami()["user"]["name"]
        page = client.list_audit(
            limit=limit,
            offset=offset,
            action=action,
            actor=actor,
            resource_id=resource_id,
            resource_type=resource_type,
            since=since,
            until=until,
            tenant=ALL_TENANTS if every_tenant else tenant,
        )
    if output == OutputFormat.JSON:
        print_json(page)
        return
    if page["items"]:
        print_table(_entry_table(page["items"]))
    print_page_note(page, "audit entries")


def _detail_text(value: object) -> str:
    """Return a detail value as the table shows it: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _entry_table(entries: list[Json]) -> Table:
    """Build the table of audit entries, with each entry's details below its action.

    The resource type is left out because the action names it, as in endpoint.created.
    Details and resource names too wide for the terminal fold onto the next lines.
    """
    table = new_table(
        Column("Time", no_wrap=True),
        "Actor",
        Column("Action and details", overflow="fold"),
        Column("Resource", min_width=len("Resource"), overflow="fold"),
    )
    for entry in entries:
        details = [f"{name}={_detail_text(value)}" for name, value in entry["details"].items()]
        table.add_row(
            format_time(entry["created_at"]),
            entry["actor"]["name"] if entry["actor"] else "-",
            # A Text cell keeps the line breaks between the parts: the table escapes
            # control characters only in plain string cells.
            Text(
                "\n".join(escape_control_characters(part) for part in [entry["action"], *details])
            ),
            entry["resource_name"] or entry["resource_id"] or "-",
        )
    return table
