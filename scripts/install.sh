#!/usr/bin/env bash
# Create .venv and install Berth into it, with the given extras (e.g. "test").
#
# torch is installed first, pinned to the CPU build 2.13.0, because a plain
# dependency on torch would let pip pick a CUDA build of several gigabytes.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "Berth needs Python 3.11 or newer; $("$python" --version) was found." >&2
    echo "Set PYTHON=/path/to/python3.11 and run again." >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "Creating the virtual environment in .venv ..."
    "$python" -m venv .venv
fi

pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    echo "Installing PyTorch 2.13.0 (CPU build) ..."
    "${pip[@]}" "torch==2.13.0"
fi

target="."
[ -n "$extras" ] && target=".[$extras]"

# Print the requirements of pyproject.toml (with the given comma-separated extras)
# whose distribution is not installed in .venv, one a line. Only metadata is read, so
# this takes well under a second, and a package removed by `pip uninstall` shows up.
missing_packages() {
    .venv/bin/python - "$1" <<'PYTHON'
import importlib.metadata
import re
import sys
import tomllib

with open("pyproject.toml", "rb") as handle:
    project = tomllib.load(handle)["project"]
# The project itself comes first, because `pip uninstall berth` removes it too.
requirements = [project["name"], *project.get("dependencies", [])]
optional = project.get("optional-dependencies", {})
for extra in filter(None, (part.strip() for part in sys.argv[1].split(","))):
    requirements += optional.get(extra, [])
for requirement in requirements:
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        print(name)
PYTHON
}

# Skip the install when pyproject.toml and the extras are as at the last install and
# every required package is still installed.
stamp=".venv/.berth-installed"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) ${extras:-none}"
if [ -f "$stamp" ] && grep -qxF "$wanted" "$stamp"; then
    missing="$(missing_packages "$extras")"
    if [ -z "$missing" ]; then
        exit 0
    fi
    echo "Berth was installed before, but these packages are missing now: ${missing//$'\n'/, }"
fi
echo "Installing Berth${extras:+ with extras: $extras} ..."
"${pip[@]}" -e "$target"
echo "$wanted" >> "$stamp"
