#!/usr/bin/env bash
# Install LiteLLM's proxy into bench/.venv-litellm, the gateway benchmark's baseline.
#
# LiteLLM gets an environment of its own because litellm[proxy] pins many packages
# (fastapi, uvicorn, pydantic, openai, httpx and more) that Berth pins too. Installed
# into .venv it could move Berth's versions and so change what the benchmark measures.
# The benchmark starts the proxy with the settings that keep it off the network:
# LITELLM_LOCAL_MODEL_COST_MAP=True, LITELLM_TELEMETRY=False and a master key.
set -euo pipefail
cd "$(dirname "$0")"

python="${PYTHON:-python3}"
if [ ! -x .venv-litellm/bin/python ]; then
    "$python" -m venv .venv-litellm
fi
.venv-litellm/bin/python -m pip install --quiet --disable-pip-version-check \
    "litellm[proxy]>=1.80,<2"
.venv-litellm/bin/litellm --version
