"""`--help` of every command shows plain placeholders such as TEXT, INTEGER and NAME.

It also prints every option name whole on an 80-column terminal.
"""

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from berth.cli.main import app

# Typer's own placeholders: <str>, <int range>, <bool>, <table|json> and {name}.
TYPER_PLACEHOLDER = re.compile(r"<[a-z][^<>\s]*(?: range)?>|\{[A-Za-z_]+\}")


def commands() -> Iterator[tuple[list[str], Any]]:
    """Yield the words and the Click command of every command and group, the root included."""
    pending: list[tuple[list[str], Any]] = [([], typer.main.get_command(app))]
    while pending:
        path, command = pending.pop()
        yield path, command
        for name, subcommand in getattr(command, "commands", {}).items():
            pending.append(([*path, name], subcommand))


def command_paths() -> Iterator[list[str]]:
    """Yield the words of every command and group, the root included."""
    for path, _ in commands():
        yield path


def option_names(command: Any) -> list[str]:
    """Return every name of every option that the help of `command` lists."""
    names = ["--help"]
    for param in command.params:
        if param.param_type_name == "option" and not param.hidden:
            names.extend([*param.opts, *param.secondary_opts])
    return names


def show_help(*words: str, columns: int = 200) -> Result:
    env = {"COLUMNS": str(columns), "NO_COLOR": "1"}
    return CliRunner().invoke(app, [*words, "--help"], env=env)


@pytest.mark.parametrize("path", list(command_paths()), ids=lambda path: " ".join(path) or "berth")
def test_help_has_no_typer_placeholders(path: list[str]) -> None:
    result = show_help(*path)

    assert result.exit_code == 0, result.output
    assert TYPER_PLACEHOLDER.findall(result.output) == []


def test_help_names_arguments_plainly() -> None:
    rename = show_help("tenant", "rename")
    set_password = show_help("user", "set-password")

    assert "Usage: berth tenant rename [OPTIONS] TENANT NEW_NAME" in rename.output
    assert re.search(r"\* +NEW_NAME +TEXT +New name of the tenant\.", rename.output)
    assert "Usage: berth user set-password [OPTIONS] [USER]" in set_password.output


def test_help_names_option_values_plainly() -> None:
    result = show_help("endpoint", "update")

    assert re.search(r"--instances +INTEGER +New number", result.output)
    assert re.search(r"--max-batch-wait-ms +FLOAT +Text Embedding", result.output)
    assert re.search(r"--runtime +\[auto\|transformers\|vllm\|llama\.cpp\] ", result.output)
    assert re.search(r"--timeout +FLOAT +Maximum time", result.output)
    # A flag takes no value, so the help text follows its name directly.
    assert re.search(r"--wait +Wait until", result.output)
    assert re.search(r"--help +Show this message", result.output)


@pytest.mark.parametrize(
    ("path", "command"),
    [pytest.param(path, command, id=" ".join(path) or "berth") for path, command in commands()],
)
def test_help_prints_option_names_whole(path: list[str], command: Any) -> None:
    result = show_help(*path, columns=80)

    assert result.exit_code == 0, result.output
    panel_lines = [line for line in result.output.splitlines() if line.startswith("│")]
    for name in option_names(command):
        # A name cut to fit, such as `--model-checkpo…`, ends in an ellipsis.
        whole_name = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w…-])")
        assert any(whole_name.search(line) for line in panel_lines), (name, result.output)
