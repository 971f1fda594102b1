"""HTTP probes of instance runtimes: readiness while starting, liveness once ready."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ProbeResult:
    """Whether the runtime responded 200, and the JSON object it sent then.

    A ready runtime's /ready body names its runtime ("runtime", "runtime_note").
    """

    ok: bool
    body: dict[str, Any] = field(default_factory=dict)


class Prober:
    def __init__(self, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        # A new connection per probe, so each probe also checks that the instance still
        # accepts connections. At one probe per second per instance that costs little.
        self._client = httpx.AsyncClient(
            timeout=timeout_s,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def check(self, address: str, path: str) -> ProbeResult:
        """Probe `path`; the result is ok when the runtime responds 200."""
        try:
            response = await self._client.get(f"http://{address}{path}")
        except (httpx.HTTPError, OSError):
            return ProbeResult(ok=False)
        if response.status_code != 200:
            return ProbeResult(ok=False)
        try:
            body = response.json()
        except ValueError:
            body = {}
        return ProbeResult(ok=True, body=body if isinstance(body, dict) else {})

    async def check_many(self, targets: list[tuple[str, str]]) -> list[ProbeResult]:
        return list(await asyncio.gather(*(self.check(address, path) for address, path in targets)))

    async def close(self) -> None:
        await self._client.aclose()
