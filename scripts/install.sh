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

# Skip the install when pyproject.toml and the extras are as at the last install.
stamp=".venv/.berth-installed"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) ${extras:-none}"
if [ -f "$stamp" ] && grep -qxF "$wanted" "$stamp"; then
    exit 0
fi
echo "Installing Berth${extras:+ with extras: $extras} ..."
"${pip[@]}" -e "$target"
echo "$wanted" >> "$stamp"
