#!/usr/bin/env bash
# Install Berth, start it, deploy the built-in embedding model as endpoint "demo",
# and print how to call it. Extra arguments go to `berth up` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install.sh
exec .venv/bin/berth up --demo "$@"
