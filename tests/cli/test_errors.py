"""How the CLI reports API, connection and usage errors."""

import json
from pathlib import Path
from typing import Any

import pytest
import typer.main

from berth.cli.main import app
from tests.cli.conftest import RunCli, unboxed
from tests.support import BerthServer, free_port


def assert_one_line_error(output: str) -> None:
    assert output.startswith("Error: ")
    assert output.count("\n") == 1
    assert "Traceback" not in output


def test_unknown_endpoint(cli: RunCli) -> None:
    result = cli("endpoint", "info", "--endpoint", "no-such-endpoint")

    assert result.exit_code == 1
    assert_one_line_error(result.stderr)
    assert "endpoint 'no-such-endpoint' not found" in result.stderr
    assert result.stdout == ""


def test_unknown_endpoint_json_leaves_stdout_empty(cli: RunCli) -> None:
    result = cli("endpoint", "info", "no-such-endpoint", "-o", "json")

    assert result.exit_code == 1
    assert result.stdout == ""


def test_server_down(cli: RunCli) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = cli("endpoint", "list", BERTH_SERVER=url)

    assert result.exit_code == 1
    assert_one_line_error(result.stderr)
    assert f"cannot reach the Berth server at {url}" in result.stderr


def test_server_url_without_scheme(cli: RunCli) -> None:
    result = cli("model", "list", "--server", "127.0.0.1:9")

    assert result.exit_code == 1
    assert "invalid server URL '127.0.0.1:9'" in result.stderr


@pytest.mark.parametrize("suffix", ["/api/v1", "/api/v1/", "/endpoints/some-id/v1"])
def test_server_url_with_route_suffix(cli: RunCli, server: BerthServer, suffix: str) -> None:
    result = cli("endpoint", "list", "--server", server.url + suffix)

    assert result.exit_code == 1
    assert_one_line_error(result.stderr)
    assert f"invalid server URL '{server.url}{suffix.rstrip('/')}'" in result.stderr
    assert f"such as {server.url}\n" in result.stderr


def test_server_url_with_other_path(cli: RunCli, server: BerthServer) -> None:
    result = cli("endpoint", "list", "--server", f"{server.url}/berth")

    assert result.exit_code == 1
    assert_one_line_error(result.stderr)
    assert "no route /berth/api/v1/endpoints" in result.stderr
    assert "management API under /api/v1/" in result.stderr


def test_unreachable_profile_server(cli: RunCli, config_home: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    profile = config_home / "berth" / "profile.json"
    profile.parent.mkdir()
    profile.write_text(json.dumps({"server": url, "api_key": "some-key"}))

    result = cli("endpoint", "list", BERTH_SERVER=None, BERTH_API_KEY=None)

    assert result.exit_code == 1
    assert_one_line_error(result.stderr)
    assert f"cannot reach the Berth server at {url}" in result.stderr
    assert f"the URL in the CLI profile {profile}" in result.stderr
    assert "berth login --server URL" in result.stderr


def test_invalid_endpoint_name(cli: RunCli) -> None:
    result = cli("endpoint", "create", "--endpoint-name", "bad name!", "--model", "echo")

    assert result.exit_code == 1
    assert_one_line_error(result.stderr)
    assert "name 'bad name!' is invalid" in result.stderr


# An ANSI escape sequence that turns the text red, as a user could paste it into a name.
RED_ESCAPE = "\x1b[31m"


def test_api_error_escapes_control_characters(cli: RunCli) -> None:
    result = cli("project", "create", f"a{RED_ESCAPE}b")

    assert result.exit_code == 1
    assert_one_line_error(result.stderr)
    assert "\x1b" not in result.stderr
    assert "a\\x1b[31mb" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "quoted"),
    [
        (("tenant", "add-member", "t", "u", "--role", f"a{RED_ESCAPE}b"), "'a\\x1b[31mb'"),
        (("endpoint", "update", "e", "--instances", f"a{RED_ESCAPE}b"), "'a\\x1b[31mb'"),
    ],
    ids=["role", "instances"],
)
def test_usage_error_escapes_control_characters(
    cli: RunCli, arguments: tuple[str, ...], quoted: str
) -> None:
    result = cli(*arguments)

    assert result.exit_code == 2
    assert "\x1b" not in result.output
    assert quoted in unboxed(result.output)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("endpoint", "create", "--endpoint-name", " ", "--model", "echo"), "--endpoint-name"),
        (("project", "create", ""), "project name"),
        (("tenant", "create", ""), "tenant name"),
        (("model", "register", "", "--ml-app", "echo"), "model name"),
        (("model", "import", "/tmp", "--name", ""), "--name"),
    ],
)
def test_empty_name_error_names_it(cli: RunCli, arguments: tuple[str, ...], message: str) -> None:
    result = cli(*arguments)

    assert result.exit_code == 1
    assert_one_line_error(result.stderr)
    # The server lists every invalid field, so other problems may follow.
    assert result.stderr.startswith(f"Error: {message} must not be empty")


def test_api_field_errors_name_options(cli: RunCli) -> None:
    too_long = cli(
        "endpoint", "create", "--endpoint-name", "long", "--model", "echo",
        "--description", "d" * 2100,
    )  # fmt: skip

    assert too_long.exit_code == 1
    assert too_long.stderr.startswith("Error: --description: must be at most 2000 characters long")
    assert too_long.stderr.endswith(f'(got "{"d" * 40}…", 2100 characters)\n')


def test_unknown_model(cli: RunCli) -> None:
    result = cli("endpoint", "create", "--endpoint-name", "fine", "--model", "no-such-model")

    assert result.exit_code == 1
    assert "model 'no-such-model' not found" in result.stderr


def test_missing_api_key(cli: RunCli) -> None:
    result = cli("endpoint", "list", BERTH_API_KEY=None)

    assert result.exit_code == 1
    assert_one_line_error(result.stderr)
    assert "run `berth login`" in result.stderr
    assert "BERTH_API_KEY" in result.stderr


def test_invalid_api_key(cli: RunCli) -> None:
    result = cli("endpoint", "list", "--api-key", "not-a-valid-key")

    assert result.exit_code == 1
    assert_one_line_error(result.stderr)
    assert "invalid platform API key" in result.stderr


def test_missing_endpoint_is_usage_error(cli: RunCli) -> None:
    result = cli("endpoint", "info")

    assert result.exit_code == 2
    assert "an endpoint name or ID is required" in unboxed(result.output)


def test_endpoint_given_twice_differently(cli: RunCli) -> None:
    result = cli("endpoint", "stop", "one", "--endpoint", "other")

    assert result.exit_code == 2
    assert "'other' differs from the endpoint argument 'one'" in unboxed(result.output)


def test_invalid_output_format(cli: RunCli) -> None:
    result = cli("model", "list", "-o", "yaml")

    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("arguments", "quoted"),
    [
        (("endpoint", "list", "--limit", "zz"), "'zz'"),
        (("user", "list", "--limit=ten"), "'ten'"),
        (("endpoint", "update", "--endpoint", "x", "--instances", "two"), "'two'"),
    ],
)
def test_number_option_error_quotes_value(
    cli: RunCli, arguments: tuple[str, ...], quoted: str
) -> None:
    result = cli(*arguments)

    assert result.exit_code == 2
    assert f"{quoted}: Input should be a valid integer" in unboxed(result.output)


def _float_options() -> list[tuple[tuple[str, ...], str]]:
    """Return (command path, option) for every float option of the `berth` command."""
    found = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        for name, subcommand in getattr(command, "commands", {}).items():
            walk(subcommand, (*path, name))
        for param in getattr(command, "params", []):
            descriptor = getattr(param, "type_descriptor", None)
            if descriptor is not None and descriptor.annotation is float:
                found.append((path, param.opts[0]))

    walk(typer.main.get_command(app), ())
    return found


FLOAT_OPTIONS = _float_options()


def test_float_options_found() -> None:
    assert (("endpoint", "create"), "--max-batch-wait-ms") in FLOAT_OPTIONS
    assert (("endpoint", "stop"), "--timeout") in FLOAT_OPTIONS


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "Infinity"])
@pytest.mark.parametrize(("command", "option"), FLOAT_OPTIONS)
def test_float_option_rejects_non_finite(
    cli: RunCli, command: tuple[str, ...], option: str, value: str
) -> None:
    required = ("--endpoint-name", "e1", "--model", "echo") if command[-1] == "create" else ("e1",)

    result = cli(*command, *required, option, value)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = unboxed(result.output)
    assert f"Invalid value for '{option}': '{float(value):g}'" in message
    assert "finite number" in message


def test_multi_line_error_keeps_lines(cli: RunCli) -> None:
    # Each invalid setting gets its own line, with its own fix.
    result = cli("up", BERTH_WORKERS="many", BERTH_CAPACITY="none")

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: BERTH_")
    assert any(line.startswith("BERTH_") for line in lines[1:]), result.stderr
    assert "\\n" not in result.stderr
