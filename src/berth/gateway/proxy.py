"""The gateway's request path: key check, input checks, instance choice, forwarding.

A request that could not be delivered (the connection was refused or could not be set
up) is tried once more on another instance. A request that reached an instance is never
sent again, because the model may already have acted on it: if that instance fails, the
caller gets a 502, or an error event when a stream had already begun.

While a Live or Updating endpoint has no ready instance (all of them are restarting,
or the server has just started), a request waits up to `no_instance_wait_s` for one
before the gateway returns 503.
"""

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable

import httpx
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from berth.gateway.errors import openai_error
from berth.gateway.table import Route, RoutingTable, Upstream
from berth.states import EndpointState, KeyStatus

logger = logging.getLogger(__name__)

# Prediction routes and the HTTP method each accepts.
ROUTES = {
    "v1/chat/completions": "POST",
    "v1/completions": "POST",
    "v1/embeddings": "POST",
    "v1/models": "GET",
    "predict": "POST",
}
# Every method the gateway route accepts, so that a wrong one gets a JSON 405 from the
# gateway instead of the router's plain-text response.
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Endpoint states in which requests are forwarded. An Updating endpoint is changing its
# model or instance count and serves from its ready instances meanwhile.
SERVING_STATES = frozenset({EndpointState.LIVE, EndpointState.UPDATING})
NOT_LIVE_RETRY_AFTER_S = "5"
NO_INSTANCE_RETRY_AFTER_S = "1"
# Connection attempts per request: the first instance and one other.
MAX_DELIVERY_ATTEMPTS = 2
# How long this gateway skips an instance that refused a connection.
UNREACHABLE_HOLD_S = 2.0
# Idle connections to instances are closed before the instances' own keep-alive timeout
# (75 s in berth.runtime), so an instance never closes one that a request is about to use.
KEEPALIVE_EXPIRY_S = 30.0
CONNECT_TIMEOUT_S = 5.0
WAIT_SLICE_S = 0.5


class BodyTooLarge(Exception):
    pass


class Gateway:
    def __init__(
        self,
        table: RoutingTable,
        max_body_bytes: int,
        timeout_s: float,
        no_instance_wait_s: float = 10.0,
        worker_label: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._table = table
        self._max_body = max_body_bytes
        self._no_instance_wait_s = no_instance_wait_s
        self._worker_headers = {"x-berth-worker": worker_label} if worker_label else {}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(
                max_connections=None,
                max_keepalive_connections=512,
                keepalive_expiry=KEEPALIVE_EXPIRY_S,
            ),
            trust_env=False,
            transport=transport,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def handle(self, request: Request) -> Response:
        response = await self._handle(request)
        response.headers.update(self._worker_headers)
        return response

    async def _handle(self, request: Request) -> Response:
        endpoint_id: str = request.path_params["endpoint_id"]
        path: str = request.path_params.get("path", "").strip("/")

        denied = self._check_key(request, endpoint_id)
        if denied is not None:
            return denied
        route = self._table.routes[endpoint_id]

        method = ROUTES.get(path)
        if method is None:
            known = ", ".join("/" + name for name in ROUTES)
            return openai_error(
                404, f"unknown route '/{path}'; this endpoint serves {known}", code="unknown_route"
            )
        if request.method != method:
            return openai_error(
                405,
                f"/{path} accepts {method} requests, not {request.method}",
                code="method_not_allowed",
                headers={"Allow": method},
            )
        if route.state not in SERVING_STATES:
            return _not_live(route)

        body = b""
        if method == "POST":
            checked = await self._read_json_body(request)
            if isinstance(checked, Response):
                return checked
            body = checked
        return await self._forward(request, route, path, body)

    def _check_key(self, request: Request, endpoint_id: str) -> Response | None:
        key = _extract_key(request)
        if not key:
            return openai_error(
                401,
                "missing API key: send the endpoint's key as 'Authorization: Bearer <key>' "
                "or in a 'key' header",
                code="missing_api_key",
            )
        entry = self._table.keys.get(hashlib.sha256(key.encode("utf-8")).hexdigest())
        route = self._table.routes.get(entry.endpoint_id) if entry else None
        if entry is None or route is None or route.deleted:
            return openai_error(401, "invalid API key", code="invalid_api_key")
        if entry.status != KeyStatus.ACTIVE:
            return openai_error(401, "this API key was revoked", code="revoked_api_key")
        if entry.endpoint_id != endpoint_id:
            return openai_error(
                401, "this API key belongs to another endpoint", code="wrong_endpoint_key"
            )
        return None

    async def _read_json_body(self, request: Request) -> bytes | Response:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            shown = content_type or "none"
            return openai_error(
                415,
                f"content type '{shown}' is not supported; send 'application/json'",
                code="unsupported_media_type",
            )
        try:
            body = await self._read_limited(request)
        except BodyTooLarge:
            return openai_error(
                413,
                f"request body is larger than the limit of {self._max_body} bytes",
                code="request_too_large",
            )
        except ClientDisconnect:
            return Response(status_code=400)
        if not body.strip():
            return openai_error(
                400, "request body is empty; send a JSON object", code="invalid_json"
            )
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return openai_error(400, f"request body is not valid JSON: {exc}", code="invalid_json")
        if not isinstance(parsed, dict):
            return openai_error(
                400,
                f"request body must be a JSON object, not {_json_kind(parsed)}",
                code="invalid_json",
            )
        return body

    async def _read_limited(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "").strip()
        # isascii() first: str.isdigit() also accepts digits such as '²' that int() rejects.
        if declared.isascii() and declared.isdigit() and int(declared) > self._max_body:
            raise BodyTooLarge
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def _forward(self, request: Request, route: Route, path: str, body: bytes) -> Response:
        tried: set[tuple[str, str]] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._no_instance_wait_s
        while len(tried) < MAX_DELIVERY_ATTEMPTS:
            upstream = route.pick(tried)
            if upstream is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                # Wake on a table change, or after a slice, when an instance that refused
                # a connection may be tried again.
                await self._table.wait_for_change(min(remaining, WAIT_SLICE_S))
                current = self._table.routes.get(route.endpoint_id)
                if current is None or current.deleted or current.state not in SERVING_STATES:
                    return _not_live(current or route)
                route = current
                continue

            tried.add((upstream.instance_id, upstream.address))
            upstream.in_flight += 1
            try:
                response = await self._send(request.method, upstream, path, body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing reached the instance, so another one may take the request.
                upstream.in_flight -= 1
                upstream.mark_unreachable(UNREACHABLE_HOLD_S)
                logger.warning(
                    "instance %s of endpoint %s could not be reached (%s); trying another",
                    upstream.instance_id,
                    route.endpoint_id,
                    type(exc).__name__,
                )
                continue
            except httpx.HTTPError as exc:
                upstream.in_flight -= 1
                return _upstream_failure(exc, upstream, route)
            return await self._relay(response, upstream, route)

        if tried:
            message = "no instance of the endpoint could be reached"
        else:
            message = "the endpoint has no ready instance right now"
        return openai_error(
            503,
            message,
            code="no_ready_instance",
            error_type="service_unavailable",
            headers={"Retry-After": NO_INSTANCE_RETRY_AFTER_S},
        )

    async def _send(
        self, method: str, upstream: Upstream, path: str, body: bytes
    ) -> httpx.Response:
        upstream_request = self._client.build_request(
            method,
            f"http://{upstream.address}/{path}",
            content=body if method == "POST" else None,
            headers={"content-type": "application/json"} if method == "POST" else None,
        )
        return await self._client.send(upstream_request, stream=True)

    async def _relay(self, response: httpx.Response, upstream: Upstream, route: Route) -> Response:
        """Pass the instance's response on; releases the instance's in-flight count once."""
        release = _release_once(upstream)
        headers = {"x-berth-instance": upstream.instance_id}
        media_type = response.headers.get("content-type", "application/json")

        if media_type.startswith("text/event-stream"):
            return StreamingResponse(
                _relay_events(response, upstream, route, release),
                status_code=response.status_code,
                media_type=media_type,
                headers={**headers, "cache-control": "no-cache"},
            )
        try:
            content = await response.aread()
        except httpx.HTTPError as exc:
            return _upstream_failure(exc, upstream, route)
        finally:
            await response.aclose()
            release()
        if "retry-after" in response.headers:
            headers["retry-after"] = response.headers["retry-after"]
        return Response(
            content, status_code=response.status_code, media_type=media_type, headers=headers
        )


async def _relay_events(
    response: httpx.Response, upstream: Upstream, route: Route, release: Callable[[], None]
) -> AsyncIterator[bytes]:
    """Yield a stream's bytes; if the instance fails midway, end with an error event."""
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        logger.warning(
            "stream from instance %s of endpoint %s broke off: %s",
            upstream.instance_id,
            route.endpoint_id,
            exc,
        )
        error = {
            "error": {
                "message": "the instance failed while streaming the response",
                "type": "server_error",
                "param": None,
                "code": "instance_failed",
            }
        }
        yield b"\n\ndata: " + orjson.dumps(error) + b"\n\n"
    finally:
        await response.aclose()
        release()


def _release_once(upstream: Upstream) -> Callable[[], None]:
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            upstream.in_flight -= 1

    return release


def _upstream_failure(exc: httpx.HTTPError, upstream: Upstream, route: Route) -> Response:
    if isinstance(exc, httpx.TimeoutException):
        logger.warning(
            "instance %s of endpoint %s timed out: %s",
            upstream.instance_id,
            route.endpoint_id,
            type(exc).__name__,
        )
        return openai_error(
            504,
            "the instance did not answer in time",
            code="instance_timeout",
            error_type="server_error",
        )
    logger.warning(
        "request to instance %s of endpoint %s failed: %s: %s",
        upstream.instance_id,
        route.endpoint_id,
        type(exc).__name__,
        exc,
    )
    return openai_error(
        502,
        "the instance failed while handling the request",
        code="instance_failed",
        error_type="server_error",
    )


def _not_live(route: Route) -> Response:
    return openai_error(
        503,
        f"the endpoint is {route.state}, not Live; try again once it is Live",
        code="endpoint_not_live",
        error_type="service_unavailable",
        headers={"Retry-After": NOT_LIVE_RETRY_AFTER_S},
    )


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def _extract_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("key")
    return key.strip() if key else None
