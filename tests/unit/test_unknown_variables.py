"""berth up names the BERTH_* variables that it does not read."""

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
