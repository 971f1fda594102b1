"""Transactions that are re-run when the database aborts them for a concurrent one.

PostgreSQL aborts one of two transactions that wait on each other's row locks
(deadlock, SQLSTATE 40P01), and, at REPEATABLE READ or SERIALIZABLE, a transaction
whose reads a concurrent commit made stale (serialization failure, 40001). SQLite
reports "database is locked" (SQLITE_BUSY) when another connection keeps the write lock
for longer than the busy timeout. The aborted transaction changed nothing, so running
it again from the start usually succeeds.

A request that fails this way outside run_transaction, or with a lock timeout (55P03,
after PostgreSQL's lock_timeout), is not re-run. busy_failure names such failures too,
so that the API and the web UI return 503 for them instead of 500.
"""

import logging
import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from berth.errors import DatabaseBusy

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_ATTEMPTS = 3
# Upper bound in seconds of the random wait before the first retry. It doubles for each
# later retry.
FIRST_BACKOFF_S = 0.02
# Retry-After in seconds when every attempt failed. The failures come from concurrent
# transactions, which usually end within a second. The value is an estimate, not a
# measurement.
BUSY_RETRY_AFTER_S = 1

_POSTGRES_FAILURES = {"40P01": "deadlock", "40001": "serialization failure"}
# A lock wait that passed PostgreSQL's lock_timeout. Not re-run, because each attempt
# could wait that long again.
_POSTGRES_LOCK_TIMEOUT = "55P03"


def _sqlstate(error: DBAPIError) -> str | None:
    # psycopg 3 names the code `sqlstate`, psycopg2 `pgcode`.
    original = error.orig
    return getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)


def transient_failure(error: BaseException) -> str | None:
    """Name the failure when re-running the transaction may succeed, else return None."""
    if not isinstance(error, DBAPIError):
        return None
    original = error.orig
    sqlstate = _sqlstate(error)
    if sqlstate in _POSTGRES_FAILURES:
        return f"{_POSTGRES_FAILURES[sqlstate]} (SQLSTATE {sqlstate})"
    if isinstance(original, sqlite3.OperationalError):
        # The low byte of an extended result code, such as SQLITE_BUSY_SNAPSHOT, is its
        # primary result code.
        code = getattr(original, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == sqlite3.SQLITE_BUSY:
            return "locked SQLite database (SQLITE_BUSY)"
        if code is None and "database is locked" in str(original):
            return "locked SQLite database (SQLITE_BUSY)"
    return None


def busy_failure(error: BaseException) -> str | None:
    """Name the failure when concurrent transactions held the database, so that the
    same request may succeed later, else return None.

    These are the failures that run_transaction re-runs, and a lock timeout.
    """
    failure = transient_failure(error)
    if failure is None and isinstance(error, DBAPIError):
        if _sqlstate(error) == _POSTGRES_LOCK_TIMEOUT:
            return f"lock timeout (SQLSTATE {_POSTGRES_LOCK_TIMEOUT})"
    return failure


def busy_error(failure: str) -> DatabaseBusy:
    """Build the DatabaseBusy for a request that failed with `failure` outside
    run_transaction, or with a failure that it does not re-run."""
    return DatabaseBusy(
        f"the database was busy with concurrent changes, so this request failed with a "
        f"{failure}; retry the request in {BUSY_RETRY_AFTER_S} s",
        BUSY_RETRY_AFTER_S,
    )


def run_transaction(
    session: Session,
    work: Callable[[], T],
    description: str,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `work` on `session` and commit, re-running both after a transient failure.

    After a deadlock, a serialization failure or a locked SQLite database, the session is
    rolled back and `work` runs again in a new transaction, up to `max_attempts` times in
    all. Each retry waits a random time of up to FIRST_BACKOFF_S, doubled for each later
    retry. `work` must therefore change nothing outside the database, and must load again every
    row it uses, because the rollback expires the session's objects. Any other error is
    raised after the session is rolled back. When the last attempt fails too, the session
    is rolled back and DatabaseBusy is raised from the database error, which the API
    returns as 503 with Retry-After. `description` names the transaction in the log.
    """
    attempt = 1
    while True:
        try:
            result = work()
            session.commit()
            return result
        except BaseException as error:
            session.rollback()
            failure = transient_failure(error)
            if failure is None:
                raise
            if attempt >= max_attempts:
                logger.error(
                    "%s failed with a %s %d times; giving up", description, failure, attempt
                )
                message = (
                    f"this change failed {attempt} times because the database was busy "
                    "with concurrent changes, so nothing was saved; retry the request in "
                    f"{BUSY_RETRY_AFTER_S} s"
                )
                raise DatabaseBusy(message, BUSY_RETRY_AFTER_S) from error
            delay_s = random.uniform(0, FIRST_BACKOFF_S * 2 ** (attempt - 1))
            attempt += 1
            logger.warning(
                "%s failed with a %s; retrying in %.0f ms (attempt %d of %d)",
                description,
                failure,
                delay_s * 1000,
                attempt,
                max_attempts,
            )
            sleep(delay_s)
