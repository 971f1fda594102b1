"""Strict JSON decoding of management API request bodies.

Python's json module (3.11) decodes NaN, Infinity and -Infinity as floats, but they are
not JSON (RFC 8259), and a float field would store them. It also decodes bodies in
UTF-16 and UTF-32, which the gateway rejects and RFC 8259 (section 8.1) does not allow
between systems. The API's routes use StrictJSONRoute, which accepts UTF-8 only and
raises InvalidJSON, a 400, for a body that is not UTF-8 or not valid JSON.

The json module decodes nested arrays and objects by recursion on the Python stack, so a
body nested about 1,000 levels deep raises RecursionError under the default recursion
limit. decode_json rejects a body nested deeper than MAX_JSON_DEPTH before decoding it,
as the gateway and the instances do (see berth.json_nesting).

The json module also keeps the last value of a key that occurs more than once in an
object, so `{"instances": 1, "instances": 9}` would silently become 9. RFC 8259 (section
4) leaves such objects to each implementation, and decode_json rejects them.
"""

import codecs
import email.message
import json
import re
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from berth.errors import InvalidJSON, value_text
from berth.json_nesting import (
    character_offset,
    too_deep_message,
    too_deep_position,
    too_deep_reason,
)

# The characters that JSON allows around a value (RFC 8259, section 2).
_JSON_WHITESPACE = b" \t\n\r"


class _NonFiniteNumber(ValueError):
    def __init__(self, constant: str) -> None:
        super().__init__(constant)
        self.constant = constant


def _reject_constant(constant: str) -> NoReturn:
    raise _NonFiniteNumber(constant)


def _constant_position(text: str, constant: str) -> int:
    """Return the index of the first `constant` outside a JSON string in `text`.

    The decoder stops at the first NaN, Infinity or -Infinity that it meets, so the first
    one outside a string is the one that it rejected.
    """
    in_string = False
    escaped = False
    for index, character in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif text.startswith(constant, index):
            return index
    return 0


def is_json_content_type(header: str) -> bool:
    """Tell whether a Content-Type is application/json or application/*+json, the types
    that FastAPI decodes as JSON."""
    message = email.message.Message()
    message["content-type"] = header
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


# One escape in JSON text: \uXXXX with its code unit, or a backslash and one character.
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)")


def _lone_surrogate_position(text: str) -> int | None:
    """Return the index of the first \\u escape in valid JSON `text` that is half of a
    UTF-16 surrogate pair without its other half, or None when there is none.

    Every backslash in valid JSON starts an escape, so matching escapes from the start
    never takes an escaped backslash followed by "u" for a \\u escape.
    """
    high_start: int | None = None
    high_end = -1
    for match in _ESCAPE.finditer(text):
        code = int(match.group(1), 16) if match.group(1) else None
        if high_start is not None:
            if match.start() == high_end and code is not None and 0xDC00 <= code <= 0xDFFF:
                high_start = None
                continue
            return high_start
        if code is not None and 0xD800 <= code <= 0xDBFF:
            high_start, high_end = match.start(), match.end()
        elif code is not None and 0xDC00 <= code <= 0xDFFF:
            return match.start()
    return high_start


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build a decoded object, raising _DuplicateKey when a key occurs more than once."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _item in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value


def decode_json(body: bytes) -> Any:
    """Decode a request body as UTF-8 JSON, rejecting NaN, Infinity, -Infinity,
    escapes of lone UTF-16 surrogates, nesting deeper than MAX_JSON_DEPTH and keys that
    occur more than once in an object, at any depth.

    A UTF-8 byte order mark is skipped, which RFC 8259 (section 8.1) allows. Raises
    InvalidJSON with the offset of the first byte that is not UTF-8, or with the
    character position and the reason for text that is not valid JSON.
    """
    content = body.removeprefix(codecs.BOM_UTF8)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = len(body) - len(content) + error.start
        raise InvalidJSON(
            f"request body is not valid UTF-8: byte 0x{body[offset]:02x} at position "
            f"{offset}; send JSON encoded as UTF-8",
            field="body",
        ) from None
    too_deep_byte = too_deep_position(content)
    if too_deep_byte is not None:
        position = character_offset(content, too_deep_byte)
        raise InvalidJSON(too_deep_message(position), field="body")
    try:
        value = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_object_without_duplicates
        )
    except RecursionError:
        # Only a request whose call stack is already hundreds of frames deep gets here.
        raise InvalidJSON(
            f"request body is not valid JSON: {too_deep_reason()}", field="body"
        ) from None
    except _DuplicateKey as error:
        # A lone surrogate in the key could not be sent back in the message as UTF-8.
        if "\\u" in text and _lone_surrogate_position(text) is not None:
            raise _lone_surrogate_error(text) from None
        raise InvalidJSON(
            f"request body has the key {value_text(error.key)} more than once in one JSON "
            "object; send each key once",
            field="body",
        ) from None
    except _NonFiniteNumber as error:
        position = _constant_position(text, error.constant)
        reason = f"{error.constant} is not a JSON number; send a number or null"
        raise _not_valid_json(position, reason) from None
    except json.JSONDecodeError as error:
        raise _not_valid_json(error.pos, error.msg) from None

    # json.loads decodes a lone surrogate escape into a string that UTF-8 cannot encode,
    # so storing or returning it would fail later.
    if "\\u" in text and _lone_surrogate_position(text) is not None:
        raise _lone_surrogate_error(text)
    return value


def _lone_surrogate_error(text: str) -> InvalidJSON:
    position = _lone_surrogate_position(text) or 0
    escape = text[position : position + 6]
    reason = (
        f"{escape} is half of a UTF-16 surrogate pair without the other half; escape a "
        "character above U+FFFF as a pair, or send it as UTF-8"
    )
    return _not_valid_json(position, reason)


def _not_valid_json(position: int, reason: str) -> InvalidJSON:
    return InvalidJSON(
        f"request body is not valid JSON at character {position}: {reason}", field="body"
    )


class StrictJSONRequest(Request):
    """A request whose `json()` decodes the body with decode_json, and whose body is
    empty when it contains only whitespace."""

    async def body(self) -> bytes:
        raw = await super().body()
        # A body of only whitespace contains no JSON value. FastAPI (0.165) reports an
        # empty body as missing, so this one gets the same 400 "request body is empty" as
        # an empty body, after the resource in the path is looked up.
        return raw if raw.strip(_JSON_WHITESPACE) else b""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = decode_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An API route that decodes its JSON body with decode_json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes_body = self.body_field is not None

        async def handle_strictly(request: Request) -> Response:
            strict = StrictJSONRequest(request.scope, request.receive)
            content_type = strict.headers.get("content-type", "")
            if takes_body and await strict.body() and is_json_content_type(content_type):
                # Decoded here, for the bodies that FastAPI would decode, because FastAPI
                # (0.165) turns any error of Request.json() other than JSONDecodeError
                # into a plain 400 without Berth's error code.
                await strict.json()
            return await handler(strict)

        return handle_strictly
