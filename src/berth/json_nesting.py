"""The nesting limit of JSON request bodies, shared by the management API, the gateway and
the instances.

Python's json module decodes nested arrays and objects by recursion on the Python stack,
so a body nested about 1,000 levels deep raises RecursionError under the default
recursion limit. orjson (3.13), which the gateway and the instances decode with, rejects
more than 1,024 levels. Each of them rejects a body nested deeper than MAX_JSON_DEPTH with
the message of `too_deep_message`, so a body that one part of Berth accepts is not
rejected by the next.
"""

import re
from itertools import accumulate

# Deepest nesting of arrays and objects that Berth decodes. It stays well below the
# default recursion limit of 1,000, which the request's own call stack shares.
MAX_JSON_DEPTH = 512

# A JSON string, escapes included.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# A JSON string, escapes included, or one bracket of an array or object.
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
# Every byte except the brackets, for bytes.translate to delete.
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
# The change of depth at each byte: +1 for an opening bracket, -1 for a closing one.
_DEPTH_STEP = [0] * 256
_DEPTH_STEP[ord("[")] = _DEPTH_STEP[ord("{")] = 1
_DEPTH_STEP[ord("]")] = _DEPTH_STEP[ord("}")] = -1


def too_deep_position(body: bytes) -> int | None:
    """Return the byte offset of the first bracket in UTF-8 `body` that opens an array or
    object deeper than MAX_JSON_DEPTH, or None when the nesting is within the limit.

    Brackets inside JSON strings do not count. A body with at most MAX_JSON_DEPTH opening
    brackets costs two byte counts. Any other body is measured without a Python loop: its
    strings are cut out and the depth is summed over the brackets that remain, about five
    times as fast as walking the brackets one by one. Only a body over the limit is then
    walked, to find the position.
    """
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return None
    without_strings = _STRING.sub(b"", body) if b'"' in body else body
    brackets = without_strings.translate(None, _NOT_BRACKETS)
    if max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) <= MAX_JSON_DEPTH:
        return None
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return match.start()
        elif token in (b"]", b"}"):
            depth -= 1
    return None


def too_deep_reason() -> str:
    return (
        f"depth limit exceeded, arrays and objects are nested more than {MAX_JSON_DEPTH} "
        f"levels deep; send JSON with at most {MAX_JSON_DEPTH} levels of nesting"
    )


def too_deep_message(character: int) -> str:
    """Return the error message for a body whose first bracket over the limit is at
    `character`, counted in characters from the start of the JSON text."""
    return f"request body is not valid JSON at character {character}: {too_deep_reason()}"


def character_offset(body: bytes, byte_offset: int) -> int:
    """Convert a byte offset in UTF-8 `body` to a character offset."""
    return len(body[:byte_offset].decode("utf-8", "replace"))
