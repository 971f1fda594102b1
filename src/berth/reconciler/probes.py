"""HTTP probes of instance runtimes: readiness while starting, liveness once ready."""

import asyncio

import httpx

PROBE_TIMEOUT_S = 2.0


class Prober:
    def __init__(self, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        # A new connection per probe, so each probe also checks that the instance still
        # accepts connections. At one probe per second per instance that costs little.
        self._client = httpx.AsyncClient(
            timeout=timeout_s,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def check(self, address: str, path: str) -> bool:
        """Return True when the runtime responds 200 at `path`."""
        try:
            response = await self._client.get(f"http://{address}{path}")
        except (httpx.HTTPError, OSError):
            return False
        return response.status_code == 200

    async def check_many(self, targets: list[tuple[str, str]]) -> list[bool]:
        return list(await asyncio.gather(*(self.check(address, path) for address, path in targets)))

    async def close(self) -> None:
        await self._client.aclose()
