"""The nesting limit that the management API, the gateway and the instances share."""

import json
import random

import pytest

from berth.json_nesting import MAX_JSON_DEPTH, character_offset, too_deep_position


def string_end(body: bytes, start: int) -> int | None:
    """Return the index of the quote that ends the string opened at `start`, if any."""
    index = start + 1
    while index < len(body):
        if body[index : index + 1] == b"\\":
            index += 2
        elif body[index : index + 1] == b'"':
            return index
        else:
            index += 1
    return None


def reference_position(body: bytes) -> int | None:
    """Find the first bracket over the limit by walking `body` byte by byte.

    A quote without a closing quote after it starts no string, as in a JSON text that
    ends inside a string, so its brackets count.
    """
    depth = 0
    index = 0
    while index < len(body):
        character = chr(body[index])
        end = string_end(body, index) if character == '"' else None
        if end is not None:
            index = end + 1
            continue
        index += 1
        if character in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return index - 1
        elif character in "]}":
            depth -= 1
    return None


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("body", "position"),
    [
        (nested(MAX_JSON_DEPTH), None),
        (nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH),
        (b'{"a": ' * (MAX_JSON_DEPTH + 1), 6 * MAX_JSON_DEPTH),
        # Many brackets, but shallow: the rows of a batch of token IDs.
        (json.dumps({"input": [[1, 2]] * 5000}).encode(), None),
        # Brackets inside strings do not count, with escaped quotes among them.
        (json.dumps({"text": "[" * 5000 + '\\"' + "{" * 5000}).encode(), None),
        # The outer array is the first level, so the inner ones start at the second.
        (b'["' + b"[" * 600 + b'", ' + nested(MAX_JSON_DEPTH) + b"]", 605 + MAX_JSON_DEPTH - 1),
    ],
)
def test_too_deep_position(body: bytes, position: int | None) -> None:
    assert too_deep_position(body) == position


def test_matches_byte_walk_on_random_bodies() -> None:
    generator = random.Random(7)
    for _ in range(300):
        pieces = [
            generator.choice([b"[", b"]", b"{", b"}", b'"', b"\\", b"x", b", "])
            for _ in range(2000)
        ]
        # Long runs of opening brackets, so that some bodies go over the limit.
        pieces.insert(generator.randrange(len(pieces)), b"[" * generator.randrange(400, 700))
        body = b"".join(pieces)

        assert too_deep_position(body) == reference_position(body), body[:200]


def test_character_offset_counts_multibyte_characters() -> None:
    body = '{"é": ['.encode()

    assert character_offset(body, body.index(b"[")) == 6
