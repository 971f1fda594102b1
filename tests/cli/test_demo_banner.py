"""The lines that `berth up --demo` prints once the demo endpoint is Live."""

import pytest

from berth.cli.demo import _print_usage

ENDPOINT = {
    "id": "00000000-0000-0000-0000-0000000000d1",
    "name": "demo",
    "url": "http://127.0.0.1:8080/endpoints/00000000-0000-0000-0000-0000000000d1",
    "openai_base_url": "http://127.0.0.1:8080/endpoints/00000000-0000-0000-0000-0000000000d1/v1",
}


@pytest.mark.parametrize(("has_password", "hint_shown"), [(False, True), (True, False)])
def test_password_hint_only_without_password(
    capsys: pytest.CaptureFixture[str], has_password: bool, hint_shown: bool
) -> None:
    _print_usage(ENDPOINT, "berth_ek_example", {"username": "admin", "has_password": has_password})

    printed = capsys.readouterr().out
    assert "Web UI: http://127.0.0.1:8080/ui/ (user 'admin'" in printed
    assert ("berth user set-password" in printed) is hint_shown
