"""scripts/install.sh: the fast path after an earlier install, and a package that was
uninstalled since.

The script runs in a copy of its folder whose .venv/bin/python is a wrapper: it records
`python -m pip ...` calls instead of running them, and passes other calls to the test's
Python, so nothing is installed anywhere.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
PYPROJECT = """\
[project]
name = "pytest"
dependencies = ["pluggy>=1"]

[project.optional-dependencies]
present = ["iniconfig"]
gone = ["berth-test-package-that-is-not-installed>=1"]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPOSITORY / "scripts" / "install.sh", tmp_path / "scripts" / "install.sh")
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    wrapper = tmp_path / ".venv" / "bin" / "python"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then\n'
        '    echo "$@" >> "$PIP_LOG"\n'
        "    exit 0\n"
        "fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return tmp_path


def run_install(project: Path, extras: str) -> tuple[subprocess.CompletedProcess[str], str]:
    log = project / "pip.log"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        ["bash", str(project / "scripts" / "install.sh"), extras],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_LOG": str(log)},
        timeout=60,
    )
    return result, log.read_text() if log.exists() else ""


def test_install_skips_when_packages_present(project: Path) -> None:
    first, first_pip = run_install(project, "present")
    again, again_pip = run_install(project, "present")

    assert first.returncode == 0, first.stderr
    assert "install" in first_pip
    assert again.returncode == 0, again.stderr
    assert again_pip == ""


def test_install_reinstalls_missing_extra_package(project: Path) -> None:
    first, _first_pip = run_install(project, "gone")
    again, again_pip = run_install(project, "gone")

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert "berth-test-package-that-is-not-installed" in again.stdout
    assert "-e .[gone]" in again_pip
