"""The same server on PostgreSQL: migrations, an endpoint, keys and a restart.

Needs the PostgreSQL server on 127.0.0.1:5432 (trust auth). The test is skipped when
it is not reachable, unless BERTH_TEST_REQUIRE_POSTGRES=1 (as in CI), where it fails.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import chat, create_live, ready_pids, wait_until
from tests.support import BerthServer, fresh_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from fresh_postgres_database()


def test_endpoint_on_postgres_survives_restart(tmp_path: Path, postgres_url: str) -> None:
    server = BerthServer(tmp_path / "home", BERTH_DATABASE_URL=postgres_url).start()
    try:
        with server.client() as client:
            endpoint, first_key = create_live(client, "pg-echo", instances=2)
            extra = client.add_key(endpoint["id"], "to revoke")
            assert chat(endpoint, extra["key"]).status_code == 200
            client.revoke_key(endpoint["id"], extra["id"])
            wait_until(
                lambda: chat(endpoint, extra["key"]).status_code == 401,
                1.0,
                "the revoked key to be rejected",
                interval_s=0.02,
            )

        server.kill()
        server.start()
        with server.client() as client:
            wait_until(lambda: ready_pids(client, endpoint["id"], 2), 60, "instances after restart")
            assert chat(endpoint, first_key).status_code == 200
            assert chat(endpoint, extra["key"]).status_code == 401
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop()
