"""Schemathesis against the management API of a real server.

It generates requests from `/api/v1/openapi.json` (valid and invalid ones, then
sequences that reuse created resources) and checks that no response is a 5xx and
that every documented response matches its schema. The run is bounded by examples per
operation and a fixed seed, so CI repeats the same cases.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import record_line
from tests.support import ADMIN_KEY, BerthServer

EXAMPLES_PER_OPERATION = 20
SEED = os.environ.get("BERTH_SCHEMATHESIS_SEED", "1")
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


@pytest.mark.timeout(240)
def test_management_api_against_its_schema(tmp_path: Path) -> None:
    server = BerthServer(tmp_path / "home").start()
    try:
        command = [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"{server.url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {ADMIN_KEY}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            SEED,
            # One worker: with two, hypothesis parses lambda sources with ast.parse
            # from two threads at once, and CPython 3.11.7 then fails at random with
            # "AST constructor recursion depth mismatch" (python/cpython#106905).
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--continue-on-failure",
            "--no-color",
        ]
        # The working folder takes whatever files the tool writes.
        result = subprocess.run(
            command,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=200,
            env={**os.environ, "NO_COLOR": "1"},
        )
        output = result.stdout + result.stderr
        generated = re.search(r"(\d+) generated", output)
        record_line(
            "schemathesis on /api/v1/openapi.json",
            f"{generated.group(1) if generated else '?'} test cases, exit status "
            f"{result.returncode} (checks: {CHECKS})",
            {
                "test_cases": int(generated.group(1)) if generated else None,
                "exit_status": result.returncode,
            },
        )
        assert result.returncode == 0, output[-6000:]
        assert "Traceback" not in server.log(), server.log()[-6000:]
    finally:
        server.stop()
