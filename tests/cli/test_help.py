"""`--help` of every command shows plain placeholders such as TEXT, INTEGER and NAME."""

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner, Result

from berth.cli.main import app

# Typer's own placeholders: <str>, <int range>, <bool>, <table|json> and {name}.
TYPER_PLACEHOLDER = re.compile(r"<[a-z][^<>\s]*(?: range)?>|\{[A-Za-z_]+\}")


def command_paths() -> Iterator[list[str]]:
    """Yield the words of every command and group, the root included."""
    pending: list[tuple[list[str], object]] = [([], typer.main.get_command(app))]
    while pending:
        path, command = pending.pop()
        yield path
        for name, subcommand in getattr(command, "commands", {}).items():
            pending.append(([*path, name], subcommand))


def show_help(*words: str) -> Result:
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
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
