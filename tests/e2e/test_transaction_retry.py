"""A real deadlock on PostgreSQL during an API request, which the server retries.

Needs the PostgreSQL server on 127.0.0.1:5432 (trust auth) and a superuser, because the
test sets deadlock_timeout. The test is skipped when the server is not reachable, unless
BERTH_TEST_REQUIRE_POSTGRES=1 (as in CI), where it fails.
"""

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ADMIN_KEY, BerthServer, fresh_postgres_database, wait_until

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres

# Revoking a key updates its row in endpoint_keys, then takes the next change number,
# which updates the "change" row of counters. The test locks the same two rows in the
# opposite order.
LOCK_CHANGE_COUNTER = "UPDATE counters SET value = value WHERE name = 'change'"
LOCK_KEY_ROW = "UPDATE endpoint_keys SET description = description WHERE id = %s"
# A server connection that waits for a lock of `holder` while it holds the row lock of
# an UPDATE on endpoint_keys, which is how the revoke request waits for the counter.
FIND_WAITING_REVOKE = """
    SELECT waiting.pid
    FROM pg_stat_activity AS waiting
    JOIN pg_locks AS held ON held.pid = waiting.pid
    WHERE waiting.datname = current_database()
      AND %(holder)s = ANY(pg_blocking_pids(waiting.pid))
      AND held.relation = 'endpoint_keys'::regclass
      AND held.mode = 'RowExclusiveLock'
      AND held.granted
"""


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from fresh_postgres_database("berth_retry")


def psycopg_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://")


def test_deadlocked_revoke_is_retried(tmp_path: Path, postgres_url: str) -> None:
    url = psycopg_url(postgres_url)
    database_name = url.rsplit("/", 1)[1]
    # PostgreSQL checks a waiting connection for a deadlock once, deadlock_timeout after
    # the wait began. The server's check (2 s) must come after the test closes the cycle,
    # and long before the test's own connection checks (30 s), so that PostgreSQL aborts
    # the server's transaction. A slow machine took more than 100 ms to close the cycle.
    with psycopg.connect(url, autocommit=True) as setup:
        setup.execute(f"ALTER DATABASE \"{database_name}\" SET deadlock_timeout = '2s'")

    server = BerthServer(tmp_path / "home", BERTH_DATABASE_URL=postgres_url).start()
    try:
        with server.client() as client:
            endpoint = client.create_endpoint("default", "pg-deadlock", "echo")
            key = client.add_key(endpoint["id"], "revoked during a deadlock")

        with (
            psycopg.connect(url) as locker,
            psycopg.connect(url, autocommit=True) as monitor,
        ):
            locker.execute("SET deadlock_timeout = '30s'")
            locker_pid = locker.execute("SELECT pg_backend_pid()").fetchone()[0]
            locker.execute(LOCK_CHANGE_COUNTER)

            responses: list[httpx.Response] = []
            revoke = threading.Thread(
                target=lambda: responses.append(
                    httpx.post(
                        f"{server.url}/api/v1/endpoints/{endpoint['id']}/keys/{key['id']}/revoke",
                        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                        timeout=60,
                    )
                )
            )
            revoke.start()

            def revoke_waits_for_counter() -> bool:
                rows = monitor.execute(FIND_WAITING_REVOKE, {"holder": locker_pid}).fetchall()
                return bool(rows)

            wait_until(revoke_waits_for_counter, 30, "the revoke to wait for the change counter")

            # This closes the cycle. PostgreSQL aborts the server's transaction, which frees
            # the key row, so this statement returns, and the commit lets the retry run.
            locker.execute(LOCK_KEY_ROW, (key["id"],))
            locker.commit()

            revoke.join(timeout=60)
            assert not revoke.is_alive(), "the revoke request did not finish"

        assert len(responses) == 1
        assert responses[0].status_code == 200, responses[0].text
        assert responses[0].json()["status"] == "Revoked"
        assert responses[0].json()["already_revoked"] is False

        log = server.log()
        retries = [line for line in log.splitlines() if "SQLSTATE 40P01" in line]
        assert len(retries) == 1
        assert "POST /api/v1/endpoints/{endpoint}/keys/{key}/revoke" in retries[0]
        assert f"key={key['id']}" in retries[0]
        assert "failed with a deadlock (SQLSTATE 40P01); retrying" in retries[0]
        assert "giving up" not in log

        with server.client() as client:
            stored = {row["id"]: row for row in client.list_keys(endpoint["id"])}
            revocations = client.list_audit(action="key.revoked", resource_id=key["id"])
        assert stored[key["id"]]["status"] == "Revoked"
        assert revocations["total"] == 1
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop()
