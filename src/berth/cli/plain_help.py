"""Plain value placeholders in `--help`: TEXT, INTEGER and NAME instead of <str>, <int>, {name}.

Typer 0.29 shows an option's type as <str> or <int range>, a flag as <bool>, and a
required argument in the usage line as {name}. Berth's help uses the placeholders of
Click and most command-line tools instead: the kind of value in capitals, none for a
flag, choices as [a|b], and arguments by their name in capitals, in brackets when
optional. `BerthGroup` applies this to itself and to every command it contains.
"""

from datetime import datetime
from pathlib import Path
from typing import Any, get_args
from uuid import UUID

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
    """A Typer command whose help shows plain placeholders."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        use_plain_metavars(params)
        return params


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
