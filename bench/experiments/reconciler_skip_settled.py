"""Experiment: the reconciler skips endpoints that are settled in Stopped.

Every step (every 500 ms) the reconciler opens a transaction per endpoint and loads its
instances, including endpoints that are Stopped, meant to stay stopped, and have no
open instance. With 1,000 such endpoints that is thousands of queries per second in the
server process, which also serves the API and the gateway. The patch drops those
endpoints from the step's snapshot. A start, restart, update or delete changes
`desired_state`, `state` or `deleted_at`, so the next step picks the endpoint up again.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def apply() -> None:
    from sqlalchemy import select

    from berth.db.models import Endpoint, Instance
    from berth.reconciler import loop
    from berth.states import DesiredState, EndpointState

    original = loop.Reconciler._read_snapshot

    def _read_snapshot(self: Any) -> Any:
        snapshot = original(self)
        with self._database.session() as session:
            open_ids = select(Instance.endpoint_id).where(Instance.ended_at.is_(None))
            settled = set(
                session.scalars(
                    select(Endpoint.id).where(
                        Endpoint.deleted_at.is_(None),
                        Endpoint.desired_state == DesiredState.STOPPED,
                        Endpoint.state == EndpointState.STOPPED,
                        Endpoint.id.not_in(open_ids),
                    )
                )
            )
        kept = [endpoint_id for endpoint_id in snapshot.endpoint_ids if endpoint_id not in settled]
        return dataclasses.replace(snapshot, endpoint_ids=kept)

    loop.Reconciler._read_snapshot = _read_snapshot  # type: ignore[method-assign]
