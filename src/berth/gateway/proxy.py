"""The gateway's request path: key check, input checks, instance choice, forwarding.

A request that could not be delivered (the connection was refused or failed before any
byte was sent) is tried once more on another instance. A request that reached an
instance is never sent again, because the model may already have acted on it.
"""

import hashlib
import logging

import httpx
import orjson
from starlette.background import BackgroundTask
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
NOT_LIVE_RETRY_AFTER_S = "5"
NO_INSTANCE_RETRY_AFTER_S = "1"


class BodyTooLarge(Exception):
    pass


class Gateway:
    def __init__(self, table: RoutingTable, max_body_bytes: int, timeout_s: float) -> None:
        self._table = table
        self._max_body = max_body_bytes
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=512),
            trust_env=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def handle(self, request: Request) -> Response:
        endpoint_id: str = request.path_params["endpoint_id"]
        path: str = request.path_params["path"].strip("/")

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
            )
        if route.state != EndpointState.LIVE:
            return openai_error(
                503,
                f"the endpoint is {route.state}, not Live; try again once it is Live",
                code="endpoint_not_live",
                error_type="service_unavailable",
                headers={"Retry-After": NOT_LIVE_RETRY_AFTER_S},
            )

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
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return openai_error(400, f"request body is not valid JSON: {exc}", code="invalid_json")
        if not isinstance(parsed, dict):
            return openai_error(
                400,
                f"request body must be a JSON object, not {type(parsed).__name__}",
                code="invalid_json",
            )
        return body

    async def _read_limited(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
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
        tried: set[str] = set()
        for _attempt in range(2):
            upstream = route.pick(tried)
            if upstream is None:
                break
            tried.add(upstream.instance_id)
            upstream.in_flight += 1
            try:
                return await self._send(request.method, upstream, path, body)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                upstream.in_flight -= 1
                logger.warning(
                    "instance %s of endpoint %s refused the connection; trying another",
                    upstream.instance_id,
                    route.endpoint_id,
                )
                continue
            except httpx.TimeoutException:
                upstream.in_flight -= 1
                return openai_error(
                    504,
                    "the instance did not answer in time",
                    code="instance_timeout",
                    error_type="server_error",
                )
            except httpx.HTTPError as exc:
                upstream.in_flight -= 1
                logger.warning(
                    "request to instance %s of endpoint %s failed: %s",
                    upstream.instance_id,
                    route.endpoint_id,
                    exc,
                )
                return openai_error(
                    502,
                    "the instance failed while handling the request",
                    code="instance_failed",
                    error_type="server_error",
                )

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

    async def _send(self, method: str, upstream: Upstream, path: str, body: bytes) -> Response:
        upstream_request = self._client.build_request(
            method,
            f"http://{upstream.address}/{path}",
            content=body if method == "POST" else None,
            headers={"content-type": "application/json"} if method == "POST" else None,
        )
        response = await self._client.send(upstream_request, stream=True)
        headers = {"x-berth-instance": upstream.instance_id}
        media_type = response.headers.get("content-type", "application/json")

        if media_type.startswith("text/event-stream"):
            return StreamingResponse(
                response.aiter_raw(),
                status_code=response.status_code,
                media_type=media_type,
                headers={**headers, "cache-control": "no-cache"},
                background=BackgroundTask(_finish_stream, response, upstream),
            )
        try:
            content = await response.aread()
        finally:
            await response.aclose()
            upstream.in_flight -= 1
        if "retry-after" in response.headers:
            headers["retry-after"] = response.headers["retry-after"]
        return Response(
            content, status_code=response.status_code, media_type=media_type, headers=headers
        )


async def _finish_stream(response: httpx.Response, upstream: Upstream) -> None:
    await response.aclose()
    upstream.in_flight -= 1


def _extract_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("key")
    return key.strip() if key else None
