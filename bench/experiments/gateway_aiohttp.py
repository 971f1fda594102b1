"""Experiment: forward gateway requests with aiohttp instead of httpx.

Profiles of the gateway under load (py-spy, see docs/benchmarks.md) show most of its CPU
time inside httpx and httpcore. Every read and write goes through anyio's stream
wrappers, and the connection pool polls every pooled socket on each request, so the cost
per request grows with the number of connections. aiohttp's client parses HTTP in C and
keeps idle connections per host in a list that it does not poll.

The patch replaces `Gateway._send` and `Gateway.close` only. `_send` returns an adapter
with the attributes of httpx.Response that `Gateway._relay` uses, and it raises httpx's
exception types, so the gateway's retry, 502 and 504 paths stay as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

# Matches the gateway's own connect timeout and keep-alive expiry (berth.gateway.proxy).
CONNECT_TIMEOUT_S = 5.0
KEEPALIVE_EXPIRY_S = 30.0


class _Response:
    """The part of httpx.Response that Gateway._relay reads."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers = response.headers

    async def aread(self) -> bytes:
        try:
            return await self._response.read()
        except aiohttp.ClientError as error:
            raise httpx.ReadError(str(error)) from error
        except TimeoutError as error:
            raise httpx.ReadTimeout("the instance did not respond in time") from error

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as error:
            raise httpx.ReadError(str(error)) from error
        except TimeoutError as error:
            raise httpx.ReadTimeout("the instance stopped sending") from error

    async def aclose(self) -> None:
        self._response.release()


def apply() -> None:
    from berth.gateway import proxy

    original_init = proxy.Gateway.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        timeout_s = kwargs.get("timeout_s", args[2] if len(args) > 2 else 300.0)
        self._aiohttp_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=timeout_s
        )
        self._aiohttp_session = None

    def _session(self: Any) -> aiohttp.ClientSession:
        # Created on first use, inside the server's event loop.
        if self._aiohttp_session is None:
            self._aiohttp_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_EXPIRY_S),
                timeout=self._aiohttp_timeout,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                trust_env=False,
            )
        return self._aiohttp_session

    async def _send(self: Any, method: str, upstream: Any, path: str, body: bytes) -> _Response:
        url = f"http://{upstream.address}/{path}"
        post = method == "POST"
        try:
            response = await _session(self).request(
                method,
                url,
                data=body if post else None,
                headers={"content-type": "application/json"} if post else None,
                allow_redirects=False,
            )
        except aiohttp.ClientConnectorError as error:
            raise httpx.ConnectError(str(error)) from error
        except TimeoutError as error:
            raise httpx.ReadTimeout("the instance did not respond in time") from error
        except aiohttp.ClientError as error:
            raise httpx.RemoteProtocolError(str(error)) from error
        return _Response(response)

    original_close = proxy.Gateway.close

    async def close(self: Any) -> None:
        if self._aiohttp_session is not None:
            await self._aiohttp_session.close()
        await original_close(self)

    proxy.Gateway.__init__ = __init__  # type: ignore[method-assign]
    proxy.Gateway._send = _send  # type: ignore[method-assign,assignment]
    proxy.Gateway.close = close  # type: ignore[method-assign]
