"""`berth up` names a rejected setting the way the user set it, and keeps secrets out."""

from pathlib import Path

import pytest
import typer
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from berth.cli.main import app
from berth.cli.output import CliError
from berth.cli.up import load_settings
from berth.settings import default_capacity


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_HOME", str(tmp_path / "home"))


def _problem(**overrides: object) -> str:
    """Return the message of a rejected option (BadParameter) or variable (CliError)."""
    error: type[Exception] = typer.BadParameter if overrides else CliError
    with pytest.raises(error) as raised:
        load_settings(**overrides)
    return str(raised.value)


def test_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_HEADER_TIMEOUT_S", "abc")

    problem = _problem()

    assert problem.startswith("BERTH_HEADER_TIMEOUT_S='abc': ")
    assert "valid number" in problem
    assert problem.endswith(
        ". Set BERTH_HEADER_TIMEOUT_S to a number greater than 0 and at most 3600, or unset "
        "it to use the default (30)"
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "BERTH_MAX_REQUEST_BYTES",
            "100",
            "BERTH_MAX_REQUEST_BYTES='100': must be greater than or equal to 1024. Set "
            "BERTH_MAX_REQUEST_BYTES to a whole number at least 1024, or unset it to use the "
            "default (8388608)",
        ),
        (
            "BERTH_PORT",
            "70000",
            "BERTH_PORT='70000': must be less than or equal to 65535. Set BERTH_PORT to a "
            "whole number at least 1 and at most 65535, or unset it to use the default (8080)",
        ),
        (
            "BERTH_PORT",
            "0",
            "BERTH_PORT='0': must be greater than or equal to 1. Set BERTH_PORT to a "
            "whole number at least 1 and at most 65535, or unset it to use the default (8080)",
        ),
        (
            "BERTH_PORT",
            "abc",
            "BERTH_PORT='abc': must be a valid integer, unable to parse string as an integer. "
            "Set BERTH_PORT to a whole number at least 1 and at most 65535, or unset it to use "
            "the default (8080)",
        ),
        (
            "BERTH_CAPACITY",
            "0",
            "BERTH_CAPACITY='0': must be greater than or equal to 1. Set BERTH_CAPACITY to a "
            "whole number at least 1 and at most 10000, or unset it to use the default "
            f"({default_capacity()} on this machine: two per CPU core, at least 4)",
        ),
        (
            "BERTH_WORKERS",
            "2.5",
            "BERTH_WORKERS='2.5': must be a valid integer, unable to parse string as an "
            "integer. Set BERTH_WORKERS to a whole number at least 1 and at most 64, or unset "
            "it to use the default (1)",
        ),
        (
            "BERTH_LOG_JSON",
            "maybe",
            "BERTH_LOG_JSON='maybe': must be a valid boolean, unable to interpret input. Set "
            "BERTH_LOG_JSON to true or false, or unset it to use the default",
        ),
    ],
)
def test_pydantic_error_is_reworded(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)

    problem = _problem()

    assert "Input should" not in problem
    assert problem == expected


def test_option_error_is_reworded() -> None:
    problem = _problem(port=70000)

    assert problem == (
        "--port=70000: must be less than or equal to 65535. "
        "Set --port to a whole number at least 1 and at most 65535"
    )


def test_port_zero_option_is_rejected() -> None:
    problem = _problem(port="0")

    assert problem == (
        "--port='0': must be greater than or equal to 1. "
        "Set --port to a whole number at least 1 and at most 65535"
    )


def test_option_value_has_no_fix_hint() -> None:
    problem = _problem(port="abc")

    assert problem.startswith("--port='abc': ")
    assert "unset" not in problem


def test_option_value_names_the_option() -> None:
    problem = _problem(port=70000)

    assert problem.startswith("--port=70000: ")


def test_secret_value_is_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_ADMIN_KEY", "tooshort")

    problem = _problem()

    assert problem == (
        "BERTH_ADMIN_KEY: the key is 8 characters long, but at least 16 are required. "
        "Set it to a long random value such as the output of `openssl rand -hex 24`"
    )
    assert "tooshort" not in problem


def test_unsupported_database_shows_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_DATABASE_URL", "mysql://berth:hunter2@127.0.0.1/berth")

    problem = _problem()

    assert problem == (
        "BERTH_DATABASE_URL: the URL scheme 'mysql' is not supported. "
        "Use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    )


def test_every_invalid_variable_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_DATABASE_URL", "mysql://127.0.0.1/berth")
    monkeypatch.setenv("BERTH_ADMIN_KEY", "tooshort")
    monkeypatch.setenv("BERTH_PORT", "http")

    lines = _problem().splitlines()

    assert [line.split(":", 1)[0] for line in lines] == [
        "BERTH_PORT='http'",
        "BERTH_DATABASE_URL",
        "BERTH_ADMIN_KEY",
    ]


def test_bad_option_and_variable_is_not_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_ADMIN_KEY", "tooshort")

    with pytest.raises(CliError) as raised:
        load_settings(port="abc")

    assert str(raised.value).splitlines()[0].startswith("--port='abc': ")
    assert str(raised.value).splitlines()[1].startswith("BERTH_ADMIN_KEY: ")


@pytest.mark.parametrize(
    ("variable", "value", "accepted", "default"),
    [
        ("BERTH_HEADER_TIMEOUT_S", "nan", "greater than 0 and at most 3600", "the default (30)"),
        ("BERTH_HEADER_TIMEOUT_S", "inf", "greater than 0 and at most 3600", "the default (30)"),
        ("BERTH_NO_INSTANCE_WAIT_S", "-Infinity", "at least 0 and at most 600", "the default (10)"),
        ("BERTH_UPSTREAM_TIMEOUT_S", "inf", "greater than 0", "the default (300)"),
        ("BERTH_STALL_TIMEOUT_S", "NaN", "greater than 0", "the default"),
    ],
)
def test_non_finite_number_names_range(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, accepted: str, default: str
) -> None:
    monkeypatch.setenv(variable, value)

    problem = _problem()

    assert problem == (
        f"{variable}={value!r}: must be a finite number {accepted}. "
        f"Set {variable} to a number {accepted}, or unset it to use {default}"
    )


@pytest.mark.parametrize(("option", "value"), [("--port", "abc"), ("--workers", "two")])
def test_option_text_is_quoted(option: str, value: str) -> None:
    result = CliRunner().invoke(app, ["up", option, value])

    assert result.exit_code == 2
    assert f"{option}='{value}'" in result.output


@pytest.mark.parametrize("value", ["notfernet", "x" * 44, "é" * 44])
def test_invalid_secret_key_names_fix(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BERTH_SECRET_KEY", value)

    problem = _problem()

    assert problem.startswith("BERTH_SECRET_KEY: the value is not a valid Fernet key")
    assert problem.count("BERTH_SECRET_KEY") == 1
    assert "Fernet.generate_key()" in problem
    assert value not in problem


def test_valid_secret_key_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("BERTH_SECRET_KEY", f" {key}\n")

    settings = load_settings()

    assert settings.secret_key_text == key


def test_empty_secret_key_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_SECRET_KEY", "")

    assert load_settings().secret_key_text is None


def test_invalid_secret_key_stops_up_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_SECRET_KEY", "notfernet")

    result = CliRunner().invoke(app, ["up", "--port", "24001"])

    # A variable in the environment is no usage error, so the status is 1, without usage text.
    assert result.exit_code == 1
    assert result.output.startswith("Error: BERTH_SECRET_KEY: the value is not a valid")
    assert "Usage:" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    # Rejected before the home folder, its database or its lock file were created.
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("berth.example.com", "it does not start with http:// or https://"),
        ("ftp://berth.example.com", "it does not start with http:// or https://"),
        ("https://", "it names no host"),
        ("https://berth.example.com/?tenant=a", "it has a query or a fragment"),
        ("https://berth.example.com/#top", "it has a query or a fragment"),
        ("https://user:secret@berth.example.com", "it contains a user name or password"),
        ("https://berth.example.com:99999", "its port is not a number from 0 to 65535"),
    ],
)
def test_invalid_public_url_names_fix(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("BERTH_PUBLIC_URL", value)

    message = _problem()

    assert message.startswith(f"BERTH_PUBLIC_URL={value!r}: it must be the ")
    assert f"but {problem}" in message
    assert "such as https://berth.example.com" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://berth.example.com", "https://berth.example.com"),
        ("https://berth.example.com/", "https://berth.example.com"),
        (" http://127.0.0.1:9000/berth/ ", "http://127.0.0.1:9000/berth"),
    ],
)
def test_public_url_drops_trailing_slash(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("BERTH_PUBLIC_URL", value)

    settings = load_settings(port=8123)

    assert settings.public_url == expected
    assert settings.advertised_url == expected
    assert settings.local_url == "http://127.0.0.1:8123"


def test_empty_public_url_means_listen_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_PUBLIC_URL", "")

    settings = load_settings(host="0.0.0.0", port=8123)

    assert settings.public_url is None
    assert settings.advertised_url == "http://127.0.0.1:8123"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("https://app.example.com/", "it has something after the host and port"),
        ("https://app.example.com/chat", "it has something after the host and port"),
        ("https://app.example.com?x=1", "it has something after the host and port"),
        ("app.example.com", "it does not start with http:// or https://"),
        ("ftp://app.example.com", "it does not start with http:// or https://"),
        ("https://", "it names no host"),
        ("https://user@app.example.com", "it contains a user name or password"),
        ("https://app.example.com:99999", "its port is not a number from 0 to 65535"),
        ("https://app.example.com:", "it has a ':' with no port after it"),
        ("https://app example.com", "it contains spaces"),
    ],
)
def test_invalid_cors_origin_names_fix(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("BERTH_CORS_ORIGINS", f"http://localhost:3000,{value}")

    message = _problem()

    assert message.startswith(f"BERTH_CORS_ORIGINS='http://localhost:3000,{value}': ")
    assert f"{value!r} is not a valid origin because {problem}" in message
    assert "such as https://app.example.com,http://localhost:3000" in message
    assert "to * for any origin" in message


def test_cors_star_with_origins_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_CORS_ORIGINS", "*,https://app.example.com")

    message = _problem()

    assert message.startswith("BERTH_CORS_ORIGINS='*,https://app.example.com': ")
    assert "Set it to * alone" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        (" , ", ()),
        ("*", ("*",)),
        (
            " HTTPS://App.Example.com:443 , http://localhost:3000,",
            ("https://app.example.com", "http://localhost:3000"),
        ),
        ("http://[::1]:80,http://[::1]:80", ("http://[::1]",)),
        ("https://app.example.com:8443", ("https://app.example.com:8443",)),
    ],
)
def test_cors_origins_are_normalized(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv("BERTH_CORS_ORIGINS", value)

    assert load_settings().cors_origins == expected


def test_cors_origins_default_empty() -> None:
    assert load_settings().cors_origins == ()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("::1", "http://[::1]:8123"),
        ("fe80::1", "http://[fe80::1]:8123"),
        ("::", "http://127.0.0.1:8123"),
        ("localhost", "http://localhost:8123"),
    ],
)
def test_local_url_brackets_ipv6(host: str, expected: str) -> None:
    settings = load_settings(host=host, port=8123)

    assert settings.local_url == expected
    assert settings.advertised_url == expected
