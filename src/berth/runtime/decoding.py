"""Turn generated tokens into streamable text: incremental detokenization and stop sequences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Number of prompt tokens decoded together with the first generated token, so that the
# decoder has the context that decides a leading space (WordPiece, SentencePiece).
_PROMPT_CONTEXT_TOKENS = 6

# Unicode replacement character: decode() returns it for an incomplete UTF-8 sequence,
# which the next byte-level token completes.
_REPLACEMENT_CHARACTER = "\ufffd"


class IncrementalDetokenizer:
    """Decode generated token ids one at a time into text deltas.

    Decoding one token alone loses merges and spaces ("cat" + "##s" is "cats", not
    "cat s"), and a byte-level token may hold half a character. Each step therefore
    decodes a short window of recent tokens twice, with and without the new token, and
    returns the difference. Text that ends in an incomplete character is held back
    until a later token completes it.
    """

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int]) -> None:
        self._tokenizer = tokenizer
        self._ids = list(prompt_ids[-_PROMPT_CONTEXT_TOKENS:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def push(self, token_id: int) -> str:
        """Add one generated token and return the text that became final, possibly ''."""
        self.add(token_id)
        return self.take()

    def add(self, token_id: int) -> None:
        """Add one generated token without decoding it yet; `take` decodes what was added."""
        self._ids.append(token_id)

    def take(self) -> str:
        """Return the text that the tokens added so far made final, possibly ''."""
        return self._advance(final=False)

    def flush(self) -> str:
        """Return the text still held back at the end of generation."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full_text = self._decode(self._ids[self._prefix_offset :])
        if final:
            full_text = full_text.rstrip(_REPLACEMENT_CHARACTER)
        elif full_text.endswith(_REPLACEMENT_CHARACTER):
            return ""
        if len(full_text) <= len(prefix_text):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return full_text[len(prefix_text) :]

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        return self._tokenizer.decode(ids, skip_special_tokens=True)


class StopSequenceMatcher:
    """Cut streamed text at the first stop sequence.

    Text that could be the start of a stop sequence is held back until the next delta
    decides it, so no part of a stop sequence is ever sent to the client.
    """

    def __init__(self, stop_sequences: Sequence[str]) -> None:
        self._stops = [stop for stop in stop_sequences if stop]
        self._pending = ""
        self.stopped = False

    @property
    def active(self) -> bool:
        """Whether there is any stop sequence to look for."""
        return bool(self._stops)

    def push(self, delta: str) -> str:
        """Add generated text and return the part that is safe to send.

        After a stop sequence matched, `stopped` is True and later calls return ''.
        """
        if self.stopped:
            return ""
        if not self._stops:
            return delta
        text = self._pending + delta
        match_start = self._first_match(text)
        if match_start is not None:
            self.stopped = True
            self._pending = ""
            return text[:match_start]
        pending_length = self._partial_match_length(text)
        self._pending = text[len(text) - pending_length :] if pending_length else ""
        return text[: len(text) - pending_length]

    def flush(self) -> str:
        """Return held text at the end of generation, when no stop sequence completed."""
        text, self._pending = self._pending, ""
        return "" if self.stopped else text

    def _first_match(self, text: str) -> int | None:
        positions = [index for stop in self._stops if (index := text.find(stop)) >= 0]
        return min(positions) if positions else None

    def _partial_match_length(self, text: str) -> int:
        """Return the length of the longest end of `text` that begins some stop sequence."""
        longest = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:length]):
                    longest = length
                    break
        return longest


class LeadingWhitespaceStripper:
    """Drop whitespace at the start of a chat reply, which the prompt context can add."""

    def __init__(self) -> None:
        self._started = False

    def push(self, delta: str) -> str:
        if self._started:
            return delta
        delta = delta.lstrip()
        self._started = bool(delta)
        return delta
