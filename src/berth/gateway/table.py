"""The gateway's in-memory view of keys, endpoints and instances.

Every gateway process keeps its own copy and refreshes it from the database every
`sync_interval_s`, fetching only rows whose change number is above the last one seen
(see `berth.db.models`). A key check is a dictionary look-up, whatever the number of
keys, and a revocation reaches every gateway process within one sync interval. Disabling
or enabling a tenant gives each of its endpoints a new change number, so it reaches the
gateways the same way.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from berth.db.engine import CHANGE_COUNTER, Database
from berth.db.models import Counter, Endpoint, EndpointKey, Instance, Model, Tenant
from berth.states import EndpointState, InstanceState, KeyStatus, MLApp

logger = logging.getLogger(__name__)


@dataclass
class KeyEntry:
    key_id: str
    endpoint_id: str
    status: KeyStatus


@dataclass
class Upstream:
    instance_id: str
    # "host:port" of the instance's runtime server.
    address: str
    # The Unix socket on which it also listens ("@name": abstract namespace), or "".
    local_socket: str = ""
    in_flight: int = 0
    # time.monotonic() until which this gateway skips the instance, because it refused a
    # connection; the database may not show its exit yet.
    unreachable_until: float = 0.0

    def mark_unreachable(self, hold_s: float) -> None:
        self.unreachable_until = time.monotonic() + hold_s


@dataclass
class Route:
    endpoint_id: str
    state: EndpointState
    ml_app: MLApp
    deleted: bool
    # The reconciler's reason for the state, which only the message of a 503 reads.
    state_reason: str = ""
    # The endpoint's tenant. While it is disabled, the gateway rejects requests with 403.
    tenant_name: str = ""
    tenant_disabled: bool = False
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    # Round-robin position, to spread ties between equally busy instances.
    turn: int = 0

    def pick(self, exclude: set[tuple[str, str]]) -> Upstream | None:
        """Choose the reachable ready instance with the fewest requests in flight.

        `exclude` contains the (instance ID, address) pairs already tried. An instance
        that was restarted at a new address counts as a new one.
        """
        now = time.monotonic()
        candidates = [
            up
            for up in self.upstreams.values()
            if (up.instance_id, up.address) not in exclude and up.unreachable_until <= now
        ]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        self.turn += 1
        offset = self.turn % len(candidates)
        rotated = candidates[offset:] + candidates[:offset]
        return min(rotated, key=lambda upstream: upstream.in_flight)


@dataclass
class _EndpointChange:
    endpoint_id: str
    state: EndpointState
    ml_app: MLApp
    deleted: bool
    state_reason: str
    tenant_name: str
    tenant_disabled: bool


@dataclass
class _Changes:
    seq: int
    keys: list[tuple[str, str, str, KeyStatus]]
    endpoints: list[_EndpointChange]
    instances: list[tuple[str, str, InstanceState, str, str, bool]]


class RoutingTable:
    def __init__(self, database: Database, sync_interval_s: float) -> None:
        self._database = database
        self._interval = sync_interval_s
        self.keys: dict[str, KeyEntry] = {}
        self.routes: dict[str, Route] = {}
        self._seq = 0
        self._kick = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Refreshes must not interleave: an older snapshot applied after a newer one
        # would bring back a revoked key.
        self._refresh_lock = asyncio.Lock()
        self.last_sync: float = 0.0
        # Set, and then replaced, whenever a refresh changes any route or instance.
        self._changed = asyncio.Event()

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def wait_for_change(self, timeout_s: float) -> bool:
        """Wait until a refresh changes routes or instances; False on timeout."""
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True

    def refresh_soon(self) -> None:
        """Ask for a refresh now instead of at the next tick (same process only)."""
        self._kick.set()

    def refresh_now_threadsafe(self, timeout_s: float = 5.0) -> None:
        """Refresh from another thread and wait for it, so that a change a request handler
        has just committed is in force in this process when the handler returns."""
        if self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self.refresh(), self._loop)
        try:
            future.result(timeout=timeout_s)
        except Exception:
            logger.exception("refreshing the routing table after a change failed")

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.refresh()
            except Exception:
                logger.exception("refreshing the gateway's routing table failed; retrying")
            try:
                await asyncio.wait_for(self._kick.wait(), timeout=self._interval)
            except TimeoutError:
                pass
            self._kick.clear()

    async def refresh(self) -> None:
        async with self._refresh_lock:
            changes = await asyncio.to_thread(self._load_changes, self._seq)
            self._apply(changes)
            self._seq = changes.seq
            self.last_sync = time.monotonic()
            if changes.endpoints or changes.instances:
                self._changed.set()
                self._changed = asyncio.Event()

    def _load_changes(self, since: int) -> _Changes:
        with self._database.session() as session:
            return _query_changes(session, since)

    def _apply(self, changes: _Changes) -> None:
        for key_hash, key_id, endpoint_id, status in changes.keys:
            self.keys[key_hash] = KeyEntry(key_id, endpoint_id, status)

        for change in changes.endpoints:
            route = self.routes.get(change.endpoint_id)
            if route is None:
                route = Route(change.endpoint_id, change.state, change.ml_app, change.deleted)
                self.routes[change.endpoint_id] = route
            route.state, route.ml_app, route.deleted = change.state, change.ml_app, change.deleted
            route.state_reason = change.state_reason
            route.tenant_name = change.tenant_name
            route.tenant_disabled = change.tenant_disabled
        self._drop_deleted()

        for instance_id, endpoint_id, instance_state, address, local, ended in changes.instances:
            route = self.routes.get(endpoint_id)
            if route is None:
                continue
            if instance_state == InstanceState.READY and not ended and address:
                existing = route.upstreams.get(instance_id)
                if existing is None or existing.address != address:
                    route.upstreams[instance_id] = Upstream(instance_id, address, local)
            else:
                route.upstreams.pop(instance_id, None)

    def _drop_deleted(self) -> None:
        deleted = {endpoint_id for endpoint_id, route in self.routes.items() if route.deleted}
        if not deleted:
            return
        for key_hash in [h for h, entry in self.keys.items() if entry.endpoint_id in deleted]:
            del self.keys[key_hash]
        for endpoint_id in deleted:
            del self.routes[endpoint_id]


def _query_changes(session: Session, since: int) -> _Changes:
    # Read the counter first: every transaction with a number up to it has committed.
    seq = session.scalar(select(Counter.value).where(Counter.name == CHANGE_COUNTER)) or 0
    if seq == since and since:
        # Nothing has changed since the last refresh: every change takes a new number.
        # Most refreshes end here, without the three queries below.
        return _Changes(seq=int(seq), keys=[], endpoints=[], instances=[])
    keys = session.execute(
        select(
            EndpointKey.key_hash, EndpointKey.id, EndpointKey.endpoint_id, EndpointKey.status
        ).where(EndpointKey.seq > since)
    ).all()
    endpoints = session.execute(
        select(
            Endpoint.id,
            Endpoint.state,
            Model.ml_app,
            Endpoint.deleted_at,
            Endpoint.state_reason,
            Tenant.name,
            Tenant.disabled,
        )
        .join(Model, Model.id == Endpoint.model_id)
        .join(Tenant, Tenant.id == Endpoint.tenant_id)
        .where(Endpoint.seq > since)
    ).all()
    instance_query = select(
        Instance.id,
        Instance.endpoint_id,
        Instance.state,
        Instance.address,
        Instance.local_socket,
        Instance.ended_at,
    ).where(Instance.seq > since)
    if since == 0:
        instance_query = instance_query.where(Instance.ended_at.is_(None))
    instances = session.execute(instance_query).all()
    return _Changes(
        seq=int(seq),
        keys=[(row[0], row[1], row[2], KeyStatus(row[3])) for row in keys],
        endpoints=[
            _EndpointChange(
                endpoint_id=row[0],
                state=EndpointState(row[1]),
                ml_app=MLApp(row[2]),
                deleted=row[3] is not None,
                state_reason=row[4] or "",
                tenant_name=row[5],
                tenant_disabled=bool(row[6]),
            )
            for row in endpoints
        ],
        instances=[
            (row[0], row[1], InstanceState(row[2]), row[3], row[4], row[5] is not None)
            for row in instances
        ],
    )
