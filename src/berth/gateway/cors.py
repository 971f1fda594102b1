"""Cross-origin resource sharing (CORS) for the gateway, off unless BERTH_CORS_ORIGINS is set.

Browser apps send the endpoint key in the Authorization header, never in a cookie, so
the gateway allows no credentials mode and may allow any request header. The management
API and the web UI get no CORS headers, because their session cookie must stay
same-site.
"""

import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Headers = list[tuple[bytes, bytes]]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

ANY_ORIGIN = "*"
ALLOWED_METHODS = b"GET, POST"
# Chromium caps a cached preflight at 2 hours; Firefox allows up to 24.
MAX_AGE_S = b"7200"
# Headers of gateway responses that a browser app may read, beyond the CORS-safelisted
# ones such as Content-Type.
EXPOSED_HEADERS = b"retry-after, x-should-retry, x-berth-instance, x-berth-worker, allow"
# Allowed in a preflight response when the request names no headers, or names them in a
# form that is not a plain list of header names. The x-stainless-* headers are the ones
# that the openai JavaScript package (4.x) adds to every request.
DEFAULT_ALLOWED_HEADERS = (
    b"authorization, content-type, key, openai-organization, openai-project, "
    b"x-stainless-arch, x-stainless-lang, x-stainless-os, x-stainless-package-version, "
    b"x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, "
    b"x-stainless-timeout"
)
# A comma-separated list of HTTP tokens (RFC 9110, section 5.6.2): the only form in
# which the gateway copies Access-Control-Request-Headers into its response.
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_HEADER_NAME_LIST = re.compile(_TOKEN + rb"(?:[ \t]*,[ \t]*" + _TOKEN + rb")*")
_MAX_REFLECTED_BYTES = 2048


class CorsPolicy:
    """The origins that may call the gateway from a browser, and the CORS headers for them."""

    def __init__(self, origins: Sequence[str]) -> None:
        self.any_origin = ANY_ORIGIN in origins
        self._origins = frozenset(origin.encode() for origin in origins)
        # Headers that every gateway response carries, whatever its request's origin.
        self.common_headers: Headers
        if self.any_origin:
            self.common_headers = [
                (b"access-control-allow-origin", b"*"),
                (b"access-control-expose-headers", EXPOSED_HEADERS),
            ]
        else:
            # Responses differ by origin, so caches must key them by it.
            self.common_headers = [(b"vary", b"origin")]

    def allowed_origin(self, headers: Headers) -> bytes | None:
        """Return the request's Origin header if it names an allowed origin, else None."""
        for name, value in headers:
            if name == b"origin":
                return value if self.any_origin or value in self._origins else None
        return None

    def response_headers(self, origin: bytes) -> Headers:
        """Return the headers for a response to `origin`, beyond `common_headers`."""
        if self.any_origin:
            return []
        return [
            (b"access-control-allow-origin", origin),
            (b"access-control-expose-headers", EXPOSED_HEADERS),
        ]

    def preflight_headers(self, headers: Headers) -> Headers | None:
        """Return the headers of a 204 response to a preflight request, beyond
        `common_headers`, or None when its origin is not allowed."""
        origin = None
        requested = b""
        for name, value in headers:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-headers":
                requested = value.strip()
        if origin is None or not (self.any_origin or origin in self._origins):
            return None

        if len(requested) <= _MAX_REFLECTED_BYTES and _HEADER_NAME_LIST.fullmatch(requested):
            allowed_headers = requested.lower()
        else:
            allowed_headers = DEFAULT_ALLOWED_HEADERS
        preflight = [
            (b"access-control-allow-methods", ALLOWED_METHODS),
            (b"access-control-allow-headers", allowed_headers),
            (b"access-control-max-age", MAX_AGE_S),
        ]
        if not self.any_origin:
            preflight.append((b"access-control-allow-origin", origin))
        return preflight

    def add_response_headers(self, headers: Headers, send: Send) -> Send:
        """Return `send`, changed to add the CORS headers to the response if the request
        comes from an allowed origin."""
        if self.any_origin:
            # `common_headers` has them all.
            return send
        origin = self.allowed_origin(headers)
        if origin is None:
            return send
        extra = self.response_headers(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], *extra]
            await send(message)

        return send_with_cors


def is_preflight(headers: Headers) -> bool:
    """Tell whether an OPTIONS request is a CORS preflight, which has
    Access-Control-Request-Method."""
    return any(name == b"access-control-request-method" for name, _ in headers)
