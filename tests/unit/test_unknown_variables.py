"""berth up names the BERTH_* variables that it does not read, even when it fails to start."""

from pathlib import Path

from typer.testing import CliRunner

from berth.cli.main import app
from berth.cli.up import unknown_variable_warnings
from berth.settings import Settings


def test_misspelt_setting_gets_a_suggestion() -> None:
    warnings = unknown_variable_warnings({"BERTH_CAPCITY": "3", "BERTH_WORKER": "2"})

    assert warnings == [
        "BERTH_CAPCITY is not a Berth setting, so it has no effect; did you mean BERTH_CAPACITY?",
        "BERTH_WORKER is not a Berth setting, so it has no effect; did you mean BERTH_WORKERS?",
    ]


def test_name_like_no_setting_gets_no_suggestion() -> None:
    assert unknown_variable_warnings({"BERTH_FOO": "1"}) == [
        "BERTH_FOO is not a Berth setting, so it has no effect"
    ]


def test_known_and_other_variables_pass() -> None:
    environ = {f"BERTH_{name.upper()}": "x" for name in Settings.model_fields}
    environ.update(
        BERTH_SERVER="http://127.0.0.1:8080",
        BERTH_API_KEY="key",
        BERTH_TENANT="default",
        BERTH_INSTANCE_OWNER="/home",
        BERTH_TEST_REQUIRE_POSTGRES="1",
        PATH="/usr/bin",
    )

    assert unknown_variable_warnings(environ) == []


def test_warning_printed_when_start_fails(tmp_path: Path) -> None:
    environment = {
        "BERTH_HOME": str(tmp_path / "home"),
        "BERTH_CAPCITY": "3",
        "BERTH_WORKERS": "many",
    }

    result = CliRunner().invoke(app, ["up"], env=environment)

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "Warning: BERTH_CAPCITY is not a Berth setting, so it has no effect; "
        "did you mean BERTH_CAPACITY?"
    )
    assert lines[1].startswith("Error: BERTH_WORKERS='many': ")


def test_warning_printed_on_usage_error(tmp_path: Path) -> None:
    environment = {"BERTH_HOME": str(tmp_path / "home"), "BERTH_CAPCITY": "3"}

    result = CliRunner().invoke(app, ["up", "--port", "http"], env=environment)

    assert result.exit_code == 2
    assert "Warning: BERTH_CAPCITY is not a Berth setting" in result.stderr
    assert "--port='http'" in result.stderr
