"""The gateway's request path: key check, input checks, instance choice, forwarding.

The gateway is a plain ASGI application that the server calls for every path under
`/endpoints/`, ahead of the Starlette router: each prediction request pays only for the
work below, not for routing, request objects or middleware. It forwards with the
client in `berth.gateway.upstream`, whose pool keeps idle connections to instances open
for reuse.

A request that could not be delivered (the connection was refused or could not be set
up) is tried once more on another instance. A request that reached an instance is never
sent again, because the model may already have acted on it: if that instance fails, the
caller gets a 502, or an error event when a stream had already begun.

While a Live, Updating or Deploying endpoint has no ready instance (all of them are
restarting, or the server has just restarted them), a request waits up to
`no_instance_wait_s` for one before the gateway returns 503.
"""

import asyncio
import codecs
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from berth.gateway.cors import CorsPolicy, Headers, is_preflight
from berth.gateway.errors import openai_error_body
from berth.gateway.table import Route, RoutingTable, Upstream
from berth.gateway.upstream import (
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamUnreachable,
)
from berth.json_nesting import character_offset, too_deep_message, too_deep_position
from berth.runtime.protocol import utf8_problem
from berth.runtime.routes import SERVED_ROUTES
from berth.secrets import PLATFORM_KEY_PREFIX
from berth.states import EndpointState, KeyStatus, caller_failure_reason

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PATH_PREFIX = "/endpoints/"

# Set to True in a request's scope once the gateway has started an event stream for it.
EVENT_STREAM_STARTED = "berth.event_stream_started"
# Prediction routes and the HTTP method each accepts.
ROUTES = {
    "v1/chat/completions": "POST",
    "v1/completions": "POST",
    "v1/embeddings": "POST",
    "v1/models": "GET",
    "predict": "POST",
}
# Endpoint states in which requests are forwarded. An Updating endpoint is changing its
# model or instance count and serves from its ready instances meanwhile.
SERVING_STATES = frozenset({EndpointState.LIVE, EndpointState.UPDATING})
# States in which a request waits up to `no_instance_wait_s` to be served.
WAITING_STATES = SERVING_STATES | {EndpointState.DEPLOYING}
# States that end in Live without anyone acting, so a client may retry a 503 in them.
RECOVERING_STATES = WAITING_STATES | {EndpointState.PENDING}
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
# A request still waiting for its instance's response after this long (up to 1.5 times
# as long) starts watching for the caller to leave. Most responses come sooner, so they
# never pay for a watcher.
DISCONNECT_WATCH_AFTER_S = 0.05

_JSON = b"application/json"
_STREAM_FAILED = (
    b"\n\ndata: "
    + openai_error_body(
        "the instance failed while streaming the response",
        code="instance_failed",
        error_type="server_error",
    )
    + b"\n\n"
)


class ClientGone(Exception):
    """The caller disconnected before its request body arrived."""


@dataclass(slots=True, eq=False)
class _CallerWatch:
    """A request waiting for its instance's response, and the watch for its caller leaving.

    The gateway starts the watch only for requests that wait longer than
    DISCONNECT_WATCH_AFTER_S, from one timer for all of them: a timer per request cost
    about 1.7 us of its CPU.
    """

    since: float
    task: asyncio.Task[Any]
    receive: Receive
    watcher: asyncio.Future[None] | None = None
    caller_left: bool = False

    def start(self) -> None:
        self.watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.caller_left = True
        self.task.cancel()

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()


@dataclass(slots=True)
class Reply:
    """A complete response: status, body and the headers beyond content type and length."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_type: bytes = _JSON


def error_reply(
    status: int,
    message: str,
    *,
    code: str,
    error_type: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> Reply:
    body = openai_error_body(message, code=code, error_type=error_type)
    extra = [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    return Reply(status, body, extra)


@dataclass(slots=True)
class _Incoming:
    """The request headers that the gateway reads, taken from the ASGI scope in one pass."""

    key: str | None = None
    # The scheme of an Authorization header that is not "Bearer <key>", for the error.
    other_scheme: str = ""
    content_type: str = ""
    content_length: str = ""
    # True when the request has more than one Authorization header, which leaves
    # unclear which key it means.
    repeated_authorization: bool = False
    # True when the request has more than one `key` header, for the same reason.
    repeated_key_header: bool = False
    # True when the Authorization header and the `key` header contain different keys.
    conflicting_keys: bool = False

    @classmethod
    def read(cls, raw_headers: list[tuple[bytes, bytes]]) -> "_Incoming":
        incoming = cls()
        authorization_key = None
        header_key = None
        seen_authorization = False
        seen_key_header = False
        for name, value in raw_headers:
            if name == b"authorization":
                incoming.repeated_authorization = seen_authorization
                seen_authorization = True
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    authorization_key = token.strip() or None
                else:
                    incoming.other_scheme = _scheme_name(scheme)
            elif name == b"key":
                incoming.repeated_key_header = seen_key_header
                seen_key_header = True
                header_key = value.decode("latin-1").strip() or None
            elif name == b"content-type":
                incoming.content_type = value.decode("latin-1")
            elif name == b"content-length":
                incoming.content_length = value.decode("latin-1").strip()
        # The same key in both headers names one key, so it is accepted.
        if authorization_key and header_key and authorization_key != header_key:
            incoming.conflicting_keys = True
        incoming.key = authorization_key or header_key
        return incoming


class Gateway:
    def __init__(
        self,
        table: RoutingTable,
        max_body_bytes: int,
        timeout_s: float,
        no_instance_wait_s: float = 10.0,
        worker_label: str | None = None,
        cors_origins: Sequence[str] = (),
    ) -> None:
        self._table = table
        self._max_body = max_body_bytes
        self._no_instance_wait_s = no_instance_wait_s
        self._common_headers = [(b"x-berth-worker", worker_label.encode())] if worker_label else []
        # None while CORS is off, so that requests skip every CORS step.
        self._cors = CorsPolicy(cors_origins) if cors_origins else None
        if self._cors is not None:
            self._common_headers.extend(self._cors.common_headers)
        self._timeout_s = timeout_s
        self._pool: UpstreamPool | None = None
        # Requests waiting for their instance, and the timer that starts their watches.
        self._callers: set[_CallerWatch] = set()
        self._caller_sweep: asyncio.TimerHandle | None = None

    def response_headers(self, request_headers: Headers) -> list[tuple[bytes, bytes]]:
        """Return the headers that every gateway response to this request carries: the
        worker label, and the CORS headers when the request's origin is allowed."""
        headers = list(self._common_headers)
        if self._cors is not None and not self._cors.any_origin:
            origin = self._cors.allowed_origin(request_headers)
            if origin is not None:
                headers.extend(self._cors.response_headers(origin))
        return headers

    def _upstreams(self) -> UpstreamPool:
        # Created on first use, inside the server's event loop.
        if self._pool is None:
            self._pool = UpstreamPool(
                read_timeout_s=self._timeout_s,
                connect_timeout_s=CONNECT_TIMEOUT_S,
                keepalive_s=KEEPALIVE_EXPIRY_S,
            )
        return self._pool

    async def close(self) -> None:
        if self._caller_sweep is not None:
            self._caller_sweep.cancel()
            self._caller_sweep = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._cors is not None:
            if scope["method"] == "OPTIONS" and is_preflight(scope["headers"]):
                await self._send_preflight_response(self._cors, scope["headers"], send)
                return
            send = self._cors.add_response_headers(scope["headers"], send)

        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._serve(scope, receive, tracked_send)
        except ClientGone:
            pass
        except Exception:
            logger.exception("unexpected error in %s %s", scope["method"], scope["path"])
            if not started:
                await self._send_reply(
                    send,
                    error_reply(
                        500,
                        "internal server error; the server log has the details",
                        code="internal_error",
                        error_type="server_error",
                    ),
                )

    async def _send_preflight_response(
        self, cors: CorsPolicy, headers: list[tuple[bytes, bytes]], send: Send
    ) -> None:
        """Send the response to a CORS preflight request, which carries no key."""
        preflight_headers = cors.preflight_headers(headers)
        if preflight_headers is None:
            # 403 rather than 405, so that a person who tries the request with curl
            # learns which setting to change.
            denied = error_reply(
                403,
                "this origin may not call the endpoint from a browser; the Berth server's "
                "BERTH_CORS_ORIGINS setting lists the origins that may",
                code="cors_origin_not_allowed",
            )
            await self._send_reply(send, denied)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [*preflight_headers, *self._common_headers],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint_id, _, rest = scope["path"][len(PATH_PREFIX) :].partition("/")
        path = rest.strip("/")
        incoming = _Incoming.read(scope["headers"])

        checked = self._check_request(incoming, endpoint_id, path, scope["method"])
        if isinstance(checked, Reply):
            await self._send_reply(send, checked)
            return
        route, method = checked

        body = b""
        if method == "POST":
            read = await self._read_json_body(incoming, receive)
            if isinstance(read, Reply):
                await self._send_reply(send, read)
                return
            body = read
        await self._forward(route, method, path, body, scope, receive, send)

    def _check_request(
        self, incoming: _Incoming, endpoint_id: str, path: str, method: str
    ) -> Reply | tuple[Route, str]:
        """Check the key, route and method; return the route and the route's method."""
        if incoming.repeated_authorization:
            return error_reply(
                400,
                "the request has more than one Authorization header; send the endpoint's "
                "key in one 'Authorization: Bearer <key>' header",
                code="repeated_authorization",
            )
        if incoming.repeated_key_header:
            return error_reply(
                400,
                "the request has more than one 'key' header; send the endpoint's key in "
                "one 'key' header or in one 'Authorization: Bearer <key>' header",
                code="repeated_key_header",
            )
        if incoming.conflicting_keys:
            return error_reply(
                400,
                "the Authorization header and the 'key' header contain different keys; send "
                "the endpoint's key in only one of them",
                code="conflicting_api_keys",
            )
        denied = self._check_key(incoming.key, endpoint_id, incoming.other_scheme)
        if denied is not None:
            return denied
        route = self._table.routes[endpoint_id]
        if route.tenant_disabled:
            # Checked after the key, so only a caller with a valid key learns the tenant.
            return error_reply(
                403,
                f"tenant '{route.tenant_name}' of this endpoint is disabled, so the endpoint "
                "serves no requests; an OrgAdmin can enable the tenant again with "
                f"`berth tenant enable {route.tenant_name}`",
                code="tenant_disabled",
            )

        expected = ROUTES.get(path)
        if expected is None:
            # The instance rejects routes that its runtime does not serve. The gateway
            # rejects only paths that no runtime serves.
            served = [*SERVED_ROUTES.get(route.ml_app, ()), "/v1/models"]
            return error_reply(
                404,
                f"unknown route '/{path}'; this endpoint's {route.ml_app.display_name} "
                f"model serves {', '.join(served)}",
                code="unknown_route",
            )
        if method != expected:
            return error_reply(
                405,
                f"/{path} accepts {expected} requests, not {method}",
                code="method_not_allowed",
                headers={"Allow": expected},
            )
        if route.state not in WAITING_STATES:
            return _not_live(route)
        return route, expected

    def _check_key(self, key: str | None, endpoint_id: str, other_scheme: str) -> Reply | None:
        if not key and other_scheme:
            return error_reply(
                401,
                f"the Authorization header has {other_scheme}; send the endpoint's key as "
                "'Authorization: Bearer <key>'",
                code="missing_api_key",
            )
        if not key:
            return error_reply(
                401,
                "missing API key: send the endpoint's key as 'Authorization: Bearer <key>' "
                "or in a 'key' header",
                code="missing_api_key",
            )
        entry = self._table.keys.get(hashlib.sha256(key.encode("utf-8")).hexdigest())
        key_route = self._table.routes.get(entry.endpoint_id) if entry else None
        if entry is None and key.startswith(PLATFORM_KEY_PREFIX):
            # The prefix is public, so naming the kind of key reveals nothing.
            return error_reply(
                401,
                "this is a platform API key, which works only for the management API and "
                "the CLI; prediction requests need an API key of the endpoint, which "
                "`berth endpoint list-apikeys ENDPOINT` shows",
                code="invalid_api_key",
            )
        if entry is None or key_route is None or key_route.deleted:
            return error_reply(401, "invalid API key", code="invalid_api_key")
        if entry.status != KeyStatus.ACTIVE:
            return error_reply(401, "this API key was revoked", code="revoked_api_key")
        if entry.endpoint_id != endpoint_id:
            route = self._table.routes.get(endpoint_id)
            if route is None or route.deleted:
                # The caller has a valid key, so naming the mistake reveals nothing.
                return error_reply(
                    401,
                    f"no endpoint has the ID '{endpoint_id}'; this API key belongs to "
                    f"endpoint {entry.endpoint_id}. Endpoint URLs take the endpoint's ID "
                    "(berth endpoint info shows it), not its name",
                    code="unknown_endpoint",
                )
            # The caller has that endpoint's key, so naming its ID reveals nothing new.
            return error_reply(
                401,
                f"this API key belongs to endpoint {entry.endpoint_id}, not {endpoint_id}; "
                f"use a key of endpoint {endpoint_id}",
                code="wrong_endpoint_key",
            )
        return None

    async def _read_json_body(self, incoming: _Incoming, receive: Receive) -> bytes | Reply:
        content_type = incoming.content_type
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            if content_type:
                message = f"content type '{content_type}' is not supported; send 'application/json'"
            else:
                message = "missing Content-Type header; send 'Content-Type: application/json'"
            return error_reply(415, message, code="unsupported_media_type")
        declared = incoming.content_length
        # isascii() first: str.isdigit() also accepts digits such as '²' that int() rejects.
        too_large = declared.isascii() and declared.isdigit() and int(declared) > self._max_body
        body = None if too_large else await self._read_limited(receive)
        if body is None:
            return error_reply(
                413,
                f"request body is larger than the limit of {self._max_body} bytes; send a "
                "smaller body, or raise BERTH_MAX_REQUEST_BYTES on the Berth server",
                code="request_too_large",
            )
        # RFC 8259 lets a parser skip a UTF-8 byte order mark, as the management API does.
        # The instance gets the body without it.
        body = body.removeprefix(codecs.BOM_UTF8)
        if not body.strip():
            return error_reply(
                400, "request body is empty; send a JSON object", code="invalid_json"
            )
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            problem = utf8_problem(body)
            if problem is None:
                too_deep = _too_deep_reply(body)
                if too_deep is not None:
                    return too_deep
                problem = f"is not valid JSON: {exc}"
            return error_reply(400, f"request body {problem}", code="invalid_json")
        if not isinstance(parsed, dict):
            return error_reply(
                400,
                f"request body must be a JSON object, not {_json_kind(parsed)}",
                code="invalid_json",
            )
        # Checked after decoding, because most bodies decode. A body with no more opening
        # brackets than the limit, as most are, costs two byte counts here.
        too_deep = _too_deep_reply(body)
        if too_deep is not None:
            return too_deep
        return body

    async def _read_limited(self, receive: Receive) -> bytes | None:
        """Return the request body, or None once it exceeds the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return None
            more = message.get("more_body", False)
            if not chunks and not more:
                return chunk
            chunks.append(chunk)
            if not more:
                return b"".join(chunks)

    async def _forward(
        self,
        route: Route,
        method: str,
        path: str,
        body: bytes,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
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
                if current is None or current.deleted or current.state not in WAITING_STATES:
                    await self._send_reply(send, _not_live(current or route))
                    return
                route = current
                continue

            tried.add((upstream.instance_id, upstream.address))
            upstream.in_flight += 1
            try:
                response = await self._request_while_caller_waits(
                    method, upstream, path, body, receive
                )
            except ClientGone:
                upstream.in_flight -= 1
                raise
            except UpstreamUnreachable as exc:
                # Nothing reached the instance, so another one may take the request.
                upstream.in_flight -= 1
                upstream.mark_unreachable(UNREACHABLE_HOLD_S)
                logger.warning(
                    "instance %s of endpoint %s could not be reached (%s); trying another",
                    upstream.instance_id,
                    route.endpoint_id,
                    exc,
                )
                continue
            except (UpstreamError, TimeoutError) as exc:
                upstream.in_flight -= 1
                reply = _upstream_failure(exc, upstream, route, self._timeout_s)
                await self._send_reply(send, reply)
                return
            try:
                await self._relay(response, upstream, route, scope, receive, send)
            finally:
                upstream.in_flight -= 1
            return

        if route.state not in SERVING_STATES:
            # A Deploying endpoint whose instances did not become ready in time.
            await self._send_reply(send, _not_live(route))
            return
        if tried:
            message = "no instance of the endpoint could be reached"
        else:
            message = "the endpoint has no ready instance right now"
        await self._send_reply(
            send,
            error_reply(
                503,
                message,
                code="no_ready_instance",
                error_type="service_unavailable",
                headers={"Retry-After": NO_INSTANCE_RETRY_AFTER_S},
            ),
        )

    async def _request_while_caller_waits(
        self, method: str, upstream: Upstream, path: str, body: bytes, receive: Receive
    ) -> UpstreamResponse:
        """Send the request upstream and return the response, unless the caller leaves first.

        A caller that leaves raises ClientGone and closes the connection to the instance.
        The instance detects the disconnect and stops working on the request, for
        example a generation whose text no caller will read.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        waiting = _CallerWatch(loop.time(), task, receive)
        self._callers.add(waiting)
        if self._caller_sweep is None:
            self._caller_sweep = loop.call_later(DISCONNECT_WATCH_AFTER_S, self._watch_callers)
        try:
            return await self._upstreams().request(
                method,
                upstream.address,
                path,
                body if method == "POST" else None,
                upstream.local_socket,
            )
        except asyncio.CancelledError:
            if not waiting.caller_left:
                raise
            # The cancellation came from the watcher, not from outside.
            task.uncancel()
            raise ClientGone from None
        finally:
            self._callers.discard(waiting)
            waiting.stop()

    def _watch_callers(self) -> None:
        """Start watching the callers of requests that have waited DISCONNECT_WATCH_AFTER_S."""
        self._caller_sweep = None
        if not self._callers:
            return
        loop = asyncio.get_running_loop()
        started_before = loop.time() - DISCONNECT_WATCH_AFTER_S
        for waiting in self._callers:
            if waiting.watcher is None and waiting.since <= started_before:
                waiting.start()
        self._caller_sweep = loop.call_later(DISCONNECT_WATCH_AFTER_S / 2, self._watch_callers)

    async def _relay(
        self,
        response: UpstreamResponse,
        upstream: Upstream,
        route: Route,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Pass the instance's response on to the caller."""
        headers = [(b"x-berth-instance", upstream.instance_id.encode())]
        if response.streaming:
            headers.append((b"cache-control", b"no-cache"))
            # Tells ShutdownCutoff how to end the stream if the server stops midway.
            scope[EVENT_STREAM_STARTED] = True
            await self._relay_events(response, upstream, route, headers, receive, send)
            return
        retry_after = response.headers.get(b"retry-after")
        if retry_after is not None:
            headers.append((b"retry-after", retry_after))
        content_type = response.headers.get(b"content-type", _JSON)
        await self._send_reply(send, Reply(response.status, response.body, headers, content_type))

    async def _relay_events(
        self,
        response: UpstreamResponse,
        upstream: Upstream,
        route: Route,
        headers: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
    ) -> None:
        """Pass a stream on as it arrives; if the instance fails midway, end with an error
        event. If the caller disconnects, close the connection so the instance stops."""
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.headers[b"content-type"]),
                    *headers,
                    *self._common_headers,
                ],
            }
        )

        async def pump() -> None:
            try:
                async for chunk in response.chunks():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except (UpstreamError, TimeoutError) as exc:
                logger.warning(
                    "stream from instance %s of endpoint %s broke off: %s",
                    upstream.instance_id,
                    route.endpoint_id,
                    exc or type(exc).__name__,
                )
                await send(
                    {"type": "http.response.body", "body": _STREAM_FAILED, "more_body": True}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        relay = asyncio.ensure_future(pump())
        watcher = asyncio.ensure_future(watch_disconnect())
        relay_finished = False
        try:
            await asyncio.wait((relay, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            relay_finished = relay.done()
            if not relay_finished:
                # The caller left: stop relaying.
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
            # Closes the connection to the instance unless the stream was read to its end.
            response.close()
        if relay_finished:
            # Raises what went wrong in the relay itself, if anything.
            relay.result()

    async def _send_reply(self, send: Send, reply: Reply) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    (b"content-type", reply.content_type),
                    (b"content-length", str(len(reply.body)).encode()),
                    *reply.headers,
                    *self._common_headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})


def _upstream_failure(
    exc: BaseException, upstream: Upstream, route: Route, timeout_s: float
) -> Reply:
    if isinstance(exc, TimeoutError):
        logger.warning(
            "instance %s of endpoint %s timed out: %s",
            upstream.instance_id,
            route.endpoint_id,
            exc,
        )
        # The connection pool raises TimeoutError only for a read that waited timeout_s;
        # a connect timeout becomes UpstreamUnreachable and goes to another instance.
        return error_reply(
            504,
            f"the instance timed out: it sent no data for {timeout_s:g} s, the limit that "
            "BERTH_UPSTREAM_TIMEOUT_S sets on the Berth server; raise that limit for slow "
            "requests, or ask for less output (max_tokens)",
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
    return error_reply(
        502,
        "the instance failed while handling the request",
        code="instance_failed",
        error_type="server_error",
    )


def _not_live(route: Route) -> Reply:
    if route.state in RECOVERING_STATES:
        # The reason names what the endpoint waits for, such as free instance slots under
        # BERTH_CAPACITY or instances that are still starting.
        waiting_for = f": {route.state_reason}" if route.state_reason else ""
        return error_reply(
            503,
            f"the endpoint is {route.state}, not Live yet{waiting_for}; try again once it is Live",
            code="endpoint_not_live",
            error_type="service_unavailable",
            headers={"Retry-After": NOT_LIVE_RETRY_AFTER_S},
        )
    if route.state == EndpointState.DELETING:
        message = "the endpoint is being deleted and serves no more requests"
    elif route.state == EndpointState.FAILED:
        # Callers hold only an endpoint key, so they get the summary of the reason but
        # not the instance's error, which can name server paths (see
        # caller_failure_reason). The owner reads the whole reason in the endpoint's info.
        summary = caller_failure_reason(route.state_reason)
        because = f" because {summary}" if summary else ""
        message = (
            f"the endpoint is Failed{because}, so it serves no requests until its owner "
            "fixes the cause and restarts it (berth endpoint restart, or Restart in the web "
            "UI); the owner finds the full reason in berth endpoint info"
        )
    else:
        # Stopping or Stopped: waiting alone will not bring it back, so the message names
        # the fix.
        message = (
            f"the endpoint is {route.state}, so it serves no requests until its owner "
            "restarts it (berth endpoint restart, or Restart in the web UI)"
        )
    # Every 503 of an endpoint that is not Live carries Retry-After. Here it also
    # carries `x-should-retry: false`, which the openai Python package (3.63) obeys
    # before Retry-After, so its client does not retry twice in vain.
    return error_reply(
        503,
        message,
        code="endpoint_not_live",
        error_type="service_unavailable",
        headers={"Retry-After": NOT_LIVE_RETRY_AFTER_S, "x-should-retry": "false"},
    )


def _too_deep_reply(body: bytes) -> Reply | None:
    """Return the 400 for a body nested deeper than MAX_JSON_DEPTH, the limit of the
    management API, or None. orjson alone would accept up to 1,024 levels."""
    position = too_deep_position(body)
    if position is None:
        return None
    message = too_deep_message(character_offset(body, position))
    return error_reply(400, message, code="invalid_json")


def _scheme_name(scheme: str) -> str:
    """Describe an Authorization scheme other than Bearer for an error message.

    Only a short word is quoted: a longer value may be the key itself, sent without
    "Bearer ", and must not come back in the response.
    """
    scheme = scheme.strip()
    if not scheme:
        return "no value"
    if len(scheme) <= 16 and scheme.isascii() and scheme.isalpha():
        return f"the scheme '{scheme}' instead of 'Bearer'"
    return "no 'Bearer ' prefix"


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
