"""Output and error handling shared by the management commands.

Tables and messages for people go to stdout, progress and errors to stderr, so that
`-o json` leaves nothing on stdout but the API's JSON.
"""

import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, RenderableType
from rich.style import StyleType
from rich.table import Column, Table
from rich.text import Text
from typer.core import TyperGroup

from berth.cli.plain_help import use_plain_help, use_plain_metavars, whole_option_names
from berth.client import ApiError, ConnectionFailed
from berth.descriptions import CONTROL_CHARACTER, JSON_ESCAPES
from berth.states import Role

Json = dict[str, Any]


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        help="Output format: 'table' for people, 'json' for the API's JSON and nothing else.",
    ),
]


class TimeStyle(StrEnum):
    FULL = "full"  # date and time to the second
    MINUTES = "minutes"  # date and time to the minute, for lists
    TIME_IF_TODAY = "time-if-today"  # time alone when it is today, else MINUTES


class CliError(Exception):
    """A failure found by the CLI itself, reported like an API error."""


class BerthGroup(TyperGroup):
    """Command group that reports API, connection and CLI errors as one line on stderr.

    Every such error exits with status 1. Usage errors keep Click's status 2. Its help,
    and that of its commands, shows plain placeholders such as TEXT and whole option
    names (see plain_help).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for command in self.commands.values():
            use_plain_help(command)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        use_plain_metavars(params)
        return params

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with whole_option_names():
            super().format_help(ctx, formatter)

    # ctx is Typer's vendored click.Context, a type that Typer does not export.
    def invoke(self, ctx: Any) -> Any:
        # The subcommand's arguments, before it parses them (the name moved in Click 8.2).
        pending = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
        arguments = [*pending, *ctx.args]
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:
            raise _escaped(_with_value(exc, arguments)) from None
        except ApiError as exc:
            print_error(describe_api_error(exc))
        except (ConnectionFailed, CliError) as exc:
            print_error(str(exc))
        raise typer.Exit(1)


def _with_value(error: typer.BadParameter, arguments: list[str]) -> typer.BadParameter:
    """Quote the rejected value in a conversion error, which names only the expected type.

    Typer's message for `--instances abc` is "Input should be a valid integer, unable to
    parse string as an integer", without the value. It is taken from the command line.
    """
    options = getattr(error.param, "opts", None) or []
    if not options or not error.message.startswith("Input should be"):
        return error
    value = None
    for index, argument in enumerate(arguments):
        name, equals, attached = argument.partition("=")
        if name in options and equals:
            value = attached
        elif argument in options and index + 1 < len(arguments):
            value = arguments[index + 1]
    if value is None:
        return error
    return typer.BadParameter(f"'{value}': {error.message}", ctx=error.ctx, param=error.param)


def _escaped(error: typer.BadParameter) -> typer.BadParameter:
    """Escape control characters in a usage error, whose message often quotes the input.

    Click escapes them in the messages it builds for unknown commands and options, but
    not in those of Berth's own checks.
    """
    error.message = escape_control_characters(error.message)
    return error


def describe_api_error(error: ApiError) -> str:
    # Another key does not help a disabled user, so that message gets no key hint.
    if error.status == 401 and error.code != "user_disabled":
        return (
            f"{error.message}; pass a valid key with --api-key, set BERTH_API_KEY "
            "or run `berth login`"
        )
    return error.message


@contextmanager
def cli_names_in_errors(names: Mapping[str, str]) -> Iterator[None]:
    """Name the command's options and arguments in place of API field names in API errors.

    `names` maps a field name of the request body to how the command line calls it, such
    as "name" to "--endpoint-name". A dotted field name is replaced wherever it occurs. A
    plain one is replaced only where it starts the message or one of its "; "-separated
    problems, because the word may also occur in its everyday sense.
    """
    try:
        yield
    except ApiError as error:
        problems = error.message.split("; ")
        for field, name in names.items():
            if "." in field:
                problems = [problem.replace(field, name) for problem in problems]
                continue
            problems = [
                name + problem[len(field) :]
                if problem.startswith((f"{field} ", f"{field}:"))
                else problem
                for problem in problems
            ]
        message = "; ".join(problems)
        if message == error.message:
            raise
        raise ApiError(error.status, error.code, message, error.field) from error


def stdout_console() -> Console:
    # Markup and emoji codes are off because table cells contain user text such as
    # descriptions, which must print as written.
    return Console(markup=False, emoji=False, highlight=False, width=_width_when_not_terminal())


# The width of tables written to a pipe or a file when COLUMNS is not set. A table takes
# only the width that its rows need, so this only keeps rows from wrapping.
UNWRAPPED_WIDTH = 1_000_000


def _width_when_not_terminal() -> int | None:
    """Return the table width when stdout is not a terminal, or None on a terminal.

    Rich (15.0) measures a terminal on stdin or stderr, or assumes 80 columns, even when
    stdout is a pipe. Instead, COLUMNS sets the width when it is set. Otherwise rows never
    wrap, so that each row stays on one line for tools such as grep and awk.
    """
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return UNWRAPPED_WIDTH


def stderr_console() -> Console:
    return Console(stderr=True, markup=False, emoji=False, highlight=False)


def print_error(message: str) -> None:
    # soft_wrap keeps each line whole, whatever the terminal width. Messages quote user
    # input such as names, so control characters print as visible escapes. The line
    # breaks between the problems of a multi-line message stay.
    printed = "\n".join(escape_control_characters(line) for line in message.split("\n"))
    stderr_console().print(Text(f"Error: {printed}", style="red"), soft_wrap=True)


def print_json(data: Any) -> None:
    # C1 controls such as U+009B, which starts an escape sequence on some terminals, are
    # written as \u escapes.
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False).translate(JSON_ESCAPES))


def print_fields(fields: Sequence[tuple[str, str]]) -> None:
    """Print label and value pairs as aligned plain lines.

    Plain lines keep long values such as URLs and keys unbroken, so they copy whole.
    """
    width = max(len(label) for label, _ in fields)
    for label, value in fields:
        printed_value = escape_control_characters(value)
        typer.echo(f"{typer.style(label.ljust(width), bold=True)}  {printed_value}")


# Visible forms of the control characters that are common in text. Any other one prints
# as \xNN, or as \uNNNN above U+00FF.
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control_characters(value: str) -> str:
    """Replace each control character in `value` with a visible escape such as \\n.

    Values stored before the API rejected control characters in descriptions may
    contain them. Printed raw, a line break or tab breaks a table row, and an escape
    sequence would change the terminal.
    """
    return CONTROL_CHARACTER.sub(_escape_match, value)


def _escape_match(match: re.Match[str]) -> str:
    character = match.group()
    code = ord(character)
    return _ESCAPES.get(character) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


class _PlainTextTable(Table):
    """A table that prints control characters in its text cells as visible escapes."""

    def add_row(
        self,
        *renderables: RenderableType | None,
        style: StyleType | None = None,
        end_section: bool = False,
    ) -> None:
        cells = [
            escape_control_characters(cell) if isinstance(cell, str) else cell
            for cell in renderables
        ]
        super().add_row(*cells, style=style, end_section=end_section)


def new_table(*columns: str | Column) -> Table:
    """Create a borderless table. Values in columns given by name fold onto more lines."""
    specs = [
        Column(column, overflow="fold") if isinstance(column, str) else column for column in columns
    ]
    return _PlainTextTable(
        *specs,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
    )


def print_table(table: Table) -> None:
    stdout_console().print(table)


def print_page_note(page: Json, noun: str) -> None:
    """Say which slice of the results a page shows when it does not show all of them."""
    item_count = len(page["items"])
    total = page["total"]
    offset = page["offset"]
    if total == 0:
        typer.echo(f"No {noun} found.")
        return
    if item_count == 0:
        typer.echo(f"No {noun} at offset {offset}; there are {total} in all.")
        return
    if item_count == total:
        return

    last = offset + item_count
    more = f"; use --offset {last} for more" if last < total else ""
    typer.echo(f"Showing {noun} {offset + 1} to {last} of {total}{more}.")


def format_time(value: str | None, *, style: TimeStyle = TimeStyle.FULL) -> str:
    """Convert an ISO 8601 time from the API to local time, or '-' when missing."""
    if not value:
        return "-"
    local = datetime.fromisoformat(value).astimezone()
    if style == TimeStyle.FULL:
        return local.strftime("%Y-%m-%d %H:%M:%S")
    if style == TimeStyle.TIME_IF_TODAY and local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


_SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB")


def format_size(size_bytes: int) -> str:
    """Format a byte count with binary units, such as '512 B' or '86.7 MiB'."""
    if size_bytes < 1024:
        return f"{size_bytes} B"
    value = float(size_bytes)
    for unit in _SIZE_UNITS:
        value /= 1024
        if value < 1024 or unit == _SIZE_UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def short_checksum(checksum: str, digits: int = 12) -> str:
    """Shorten 'sha256:HEX' to its algorithm and first `digits` hex digits, or '-' when empty."""
    if not checksum:
        return "-"
    algorithm, separator, digest = checksum.partition(":")
    if not separator:
        return checksum[:digits]
    return f"{algorithm}:{digest[:digits]}"


def confirm_on_terminal(question: str, assume_yes: bool) -> None:
    """Ask for confirmation when stdin is a terminal, and abort with status 1 on no.

    Without a terminal the command proceeds at once, so that scripts do not block on a prompt.
    """
    if assume_yes or not stdin_is_terminal():
        return
    typer.confirm(question, abort=True, err=True)


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def parse_role(value: str | None) -> Role | None:
    """Read a tenant role in any letter case, or stop with a message that lists the roles."""
    if value is None:
        return None
    for role in Role:
        if value.strip().casefold() == role.value.casefold():
            return role
    choices = " or ".join(role.value for role in Role)
    raise typer.BadParameter(f"'{value}' is not a tenant role; choose {choices}")
