"""Username and password sign-in for the web UI, with a limit on failed attempts."""

import secrets
import threading
import time
from collections import deque
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from berth.auth import Principal, principal_for
from berth.db.models import User, WebSession, utcnow
from berth.errors import BerthError, Unauthenticated, UserDisabled
from berth.names import name_key
from berth.secrets import hash_key
from berth.service.common import new_id
from berth.service.users import verify_password

SESSION_LIFETIME = timedelta(hours=12)


class TooManyAttempts(BerthError):
    status_code = 429
    code = "too_many_attempts"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"too many failed sign-ins; try again in {retry_after_s} s", retry_after=retry_after_s
        )
        self.retry_after_s = retry_after_s


class LoginLimiter:
    """Allows `max_failures` failed sign-ins per user name and client address in a window.

    NOTE: the counts live in this process, so with several worker processes each
    worker allows its own `max_failures`.
    """

    def __init__(
        self, max_failures: int = 5, window_s: float = 300.0, clock=time.monotonic
    ) -> None:  # type: ignore[no-untyped-def]
        self._max = max_failures
        self._window = window_s
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, username: str, address: str) -> None:
        with self._lock:
            recent = self._recent((name_key(username), address))
            if len(recent) >= self._max:
                raise TooManyAttempts(int(recent[0] + self._window - self._clock()) + 1)

    def fail(self, username: str, address: str) -> None:
        with self._lock:
            key = (name_key(username), address)
            self._recent(key).append(self._clock())

    def succeed(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop((name_key(username), address), None)

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= self._clock() - self._window:
            times.popleft()
        return times


def sign_in(
    session: Session, limiter: LoginLimiter, username: str, password: str, address: str
) -> tuple[str, Principal]:
    """Check the password and open a web session; returns the cookie token."""
    limiter.check(username, address)
    user = session.scalar(select(User).where(User.username_key == name_key(username)))
    if user is None or not verify_password(user, password):
        limiter.fail(username, address)
        raise Unauthenticated("wrong user name or password")
    limiter.succeed(username, address)
    if user.disabled:
        # Checked after the password, so only a caller who has it learns that the user is disabled.
        raise UserDisabled(
            f"user '{user.username}' is disabled, so it cannot sign in; an OrgAdmin can "
            f"enable it with `berth user enable {user.username}`"
        )

    principal = principal_for(session, user, None, address)
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    session.add(
        WebSession(
            id=new_id(),
            token_hash=hash_key(token),
            user_id=user.id,
            tenant_id=principal.tenant_id,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    return token, principal


def sign_out(session: Session, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == hash_key(token)))


def switch_tenant(
    session: Session, token: str, tenant_ref: str | None, address: str = ""
) -> Principal:
    """Make `tenant_ref` the active tenant of the web session with this cookie token.

    Every later request of that browser, to the web UI and to the API, acts in that
    tenant without sending X-Berth-Tenant. `None` selects the user's default tenant, which
    is how a session leaves a tenant that was disabled or that the user was removed from.
    """
    row = session.scalar(select(WebSession).where(WebSession.token_hash == hash_key(token)))
    if row is None or row.expires_at <= utcnow() or row.user.disabled:
        raise Unauthenticated("your session has ended; sign in again")
    principal = principal_for(session, row.user, tenant_ref, address)
    principal.web_session_id = row.id
    row.tenant_id = principal.tenant_id
    return principal
