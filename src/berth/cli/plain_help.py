"""Plain value placeholders in `--help`: TEXT, INTEGER and NAME instead of <str>, <int>, {name}.

Typer 0.29 shows an option's type as <str> or <int range>, a flag as <bool>, and a
required argument in the usage line as {name}. Berth's help uses the placeholders of
Click and most command-line tools instead: the kind of value in capitals, none for a
flag, choices as [a|b], and arguments by their name in capitals, in brackets when
optional. The help also prints every option name whole on a narrow terminal, and
wraps the help text instead. `BerthGroup` applies this to itself and to every command
it contains.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, get_args
from uuid import UUID

from rich.console import RenderableType
from rich.style import StyleType
from rich.table import Table
from rich.text import Text
from typer import rich_utils
from typer.core import TyperArgument, TyperCommand

_TYPE_NAMES: dict[Any, str] = {
    str: "TEXT",
    int: "INTEGER",
    float: "FLOAT",
    bool: "BOOLEAN",
    datetime: "DATETIME",
    Path: "PATH",
    UUID: "UUID",
}


def value_metavar(param: Any) -> str:
    """Return the placeholder for the value of a Typer parameter, such as TEXT or [a|b]."""
    descriptor = param.type_descriptor
    if descriptor.is_choice:
        return "[" + "|".join(_choice_text(choice) for choice in descriptor.choices) + "]"
    if descriptor.is_path:
        return "PATH"
    annotation = descriptor.annotation
    if descriptor.is_list:
        (annotation,) = get_args(annotation)
    name = _TYPE_NAMES.get(annotation) or getattr(annotation, "__name__", "value")
    return str(name).upper()


def _choice_text(choice: Any) -> str:
    return str(getattr(choice, "value", choice))


class PlainArgument(TyperArgument):
    """A Typer argument shown as NAME in the usage line and with its value type in help."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return value_metavar(self)

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if not self.required:
            name = f"[{name}]"
        if self.nargs != 1:
            name += "..."
        return name


class PlainHelpCommand(TyperCommand):
    """A Typer command whose help shows plain placeholders and whole option names."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        use_plain_metavars(params)
        return params

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with whole_option_names():
            super().format_help(ctx, formatter)


class WholeOptionNamesTable(Table):
    """A table of Typer's options panel that never cuts or wraps an option's name.

    Typer 0.29 adds each row of that panel as the cells [required marker], long names,
    short names, negative long names, negative short names, value type and help text,
    with no columns declared. Rich (15.0) then shrinks the name columns too when the
    rows are wider than the terminal, so an 80-column terminal showed
    `--model-checkpo…`. Here
    only the value type and help text columns shrink, and they wrap instead. To leave
    them room, each name of an option goes on a line of its own, and a negative name
    such as --share-with-tenant goes under its positive name instead of in a column.
    """

    def add_row(
        self,
        *renderables: RenderableType | None,
        style: StyleType | None = None,
        end_section: bool = False,
    ) -> None:
        cells = list(renderables)
        # Only an options row has six or more cells. The table of subcommands declares
        # its two columns before its rows.
        if len(cells) >= 6 and len(self.columns) in (0, len(cells) - 2):
            cells = _stack_option_names(cells)
            if not self.columns:
                for _ in range(len(cells) - 2):
                    self.add_column(no_wrap=True, highlight=self.highlight)
                for _ in range(2):
                    self.add_column(overflow="fold", highlight=self.highlight)
        super().add_row(*cells, style=style, end_section=end_section)


def _stack_option_names(cells: list[RenderableType | None]) -> list[RenderableType | None]:
    """Return an options row with one name a line and the negative names under the others.

    The row loses its two negative-name cells.
    """
    *marker, long_names, short_names, negative_long, negative_short, value_type, help_text = cells
    return [
        *marker,
        _one_name_a_line(long_names, negative_long),
        _one_name_a_line(short_names, negative_short),
        value_type,
        help_text,
    ]


def _one_name_a_line(*cells: RenderableType | None) -> RenderableType | None:
    """Join the comma-separated names of Text cells into one Text with one name a line."""
    texts = [cell for cell in cells if isinstance(cell, Text)]
    if len(texts) != len(cells):
        return cells[0]
    names = [name for text in texts for name in text.split(",") if name.plain]
    return Text("\n").join(names)


@contextmanager
def whole_option_names() -> Iterator[None]:
    """Render Typer's rich help with `WholeOptionNamesTable` for its options panels.

    NOTE: Typer 0.29 builds those tables inside `rich_utils` with no way to pass a table
    class, so the module's `Table` name is replaced while the help renders. The CLI
    renders help in one thread, so no other table is built meanwhile.
    """
    original = rich_utils.Table
    rich_utils.Table = WholeOptionNamesTable  # type: ignore[misc]
    try:
        yield
    finally:
        rich_utils.Table = original  # type: ignore[misc]


def use_plain_metavars(params: list[Any]) -> None:
    """Give each parameter a plain placeholder unless it sets its own metavar.

    The help option and Typer's completion options are added after a command is built,
    so commands call this on the parameters that `get_params` returns.

    Parameters without a `type_descriptor` come from a Typer release that runs on Click
    (before 0.26), which prints Click's plain placeholders already, so they stay as they are.
    """
    for param in params:
        if not hasattr(param, "type_descriptor"):
            continue
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = param.name.upper() if param.name else "ARGUMENT"
            # The usage line and the type column of an argument ignore its metavar, so
            # the argument takes the subclass that shows them plainly.
            if type(param) is TyperArgument:
                param.__class__ = PlainArgument
        elif param.metavar is None:
            flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
            param.metavar = "" if flag else value_metavar(param)


def use_plain_help(command: Any) -> None:
    """Show plain placeholders in the help of `command`, a command that Typer built.

    Typer gives no way to choose the class of every command, so a plain TyperCommand
    takes the subclass here. Commands of other classes are left as they are.
    """
    if type(command) is TyperCommand:
        command.__class__ = PlainHelpCommand
