#!/usr/bin/env bash
# Install Berth with its test dependencies and run the whole test suite.
# Extra arguments go to pytest (e.g. -k gateway, or -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install.sh test
exec .venv/bin/python -m pytest "$@"
