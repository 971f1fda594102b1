"""A bounded load generator for the fault tests, and the figures it reports.

Each client thread sends chat completions to one endpoint, alternating plain and
streamed requests, and checks every response: a plain one must be 200 with the words it
sent, a streamed one must carry those words and end with `[DONE]`. For a model that
replies with a marker word instead of an echo (see `tests.faults.marker_model`), the
reply must repeat one known marker, and the outcome names the checkpoint it belongs to.
The threads stop when asked, after `max_requests` in total, or after `max_seconds`,
whichever comes first.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
import orjson

REFUSED_PAUSE_S = 0.1
# Tokens a marker model generates per request; a short reply keeps each request brief.
MARKER_REPLY_TOKENS = 3
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    streamed: bool
    # "ok" for a correct response, "http_<status>" for an error status, "stream_error"
    # for an error event and "stream_cut" for a stream that ended without [DONE].
    # "refused" means the server did not accept the connection, "cut" that the
    # connection broke, and "wrong_content" that the words came back changed.
    result: str
    # Error code of the body, e.g. "instance_failed"; "" when there is none.
    code: str = ""
    instance: str = ""
    model: str = ""
    # Checkpoint whose marker word the reply repeated; "" for echo replies.
    checkpoint: str = ""

    @property
    def ok(self) -> bool:
        return self.result == "ok"


@dataclass
class Figures:
    scenario: str
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return len(self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.ok]

    def by_result(self) -> dict[str, int]:
        counts = Counter(outcome.result for outcome in self.outcomes)
        return dict(sorted(counts.items()))

    def summary(self) -> str:
        results = ", ".join(f"{name} {count}" for name, count in self.by_result().items())
        line = (
            f"{self.scenario}: sent {self.sent}, failed {len(self.failed)} "
            f"({results or 'none'}) in {self.seconds:.1f} s"
        )
        if self.notes:
            line += "; " + ", ".join(f"{name} {value}" for name, value in self.notes.items())
        return line

    def as_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "sent": self.sent,
            "failed": len(self.failed),
            "by_result": self.by_result(),
            "seconds": round(self.seconds, 1),
            "notes": self.notes,
        }


class LoadGenerator:
    """Client threads that keep requests in flight against one endpoint."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        scenario: str,
        *,
        threads: int = 4,
        max_requests: int = 3000,
        max_seconds: float = 60.0,
        words: int = 8,
        request_timeout_s: float = 30.0,
        markers: Mapping[str, str] | None = None,
    ) -> None:
        """`markers` maps each marker word to its checkpoint's name; without it the
        endpoint must echo each request's words."""
        self._url = f"{base_url}/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._threads = threads
        self._max_requests = max_requests
        self._max_seconds = max_seconds
        self._words = words
        self._timeout = request_timeout_s
        self._markers = dict(markers or {})
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._workers: list[threading.Thread] = []
        self._started = 0.0
        self.figures = Figures(scenario)

    def __enter__(self) -> LoadGenerator:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._started = time.monotonic()
        for index in range(self._threads):
            worker = threading.Thread(
                target=self._run, args=(index,), name=f"load-{index}", daemon=True
            )
            worker.start()
            self._workers.append(worker)

    def halt(self) -> None:
        """Start no new request; those in flight go on until `stop` collects them."""
        self._stop.set()

    def stop(self) -> Figures:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self._timeout + 5)
        self.figures.seconds = time.monotonic() - self._started
        return self.figures

    def wait_for_requests(self, count: int, timeout_s: float = 30.0) -> None:
        """Block until at least `count` requests have finished."""
        deadline = time.monotonic() + timeout_s
        while len(self.figures.outcomes) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"load did not reach {count} requests in {timeout_s:.0f} s")
            time.sleep(0.02)

    def outcomes_since(self, moment: float) -> list[Outcome]:
        with self._lock:
            return [outcome for outcome in self.figures.outcomes if outcome.started >= moment]

    def _run(self, index: int) -> None:
        deadline = self._started + self._max_seconds
        with httpx.Client(timeout=self._timeout, trust_env=False) as client:
            for turn in itertools.count():
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                number = next(self._counter)
                if number >= self._max_requests:
                    return
                text = " ".join([f"t{index}-{turn}", *WORDS[: self._words - 1]])
                started = time.monotonic()
                if turn % 2:
                    outcome = self._send_streamed(client, text, started)
                else:
                    outcome = self._send_plain(client, text, started)
                with self._lock:
                    self.figures.outcomes.append(outcome)
                if outcome.result == "refused":
                    # Like a real client, pause before trying a server that is down.
                    self._stop.wait(REFUSED_PAUSE_S)

    def _request_body(self, text: str, stream: bool) -> dict[str, object]:
        body: dict[str, object] = {
            "messages": [{"role": "user", "content": text}],
            "stream": stream,
        }
        if self._markers:
            body["max_tokens"] = MARKER_REPLY_TOKENS
        return body

    def _check_reply(self, sent: str, reply: str) -> tuple[str, str]:
        """Return the result and, for a marker reply, the checkpoint that produced it."""
        if not self._markers:
            return ("ok" if reply == sent else "wrong_content"), ""
        words = reply.split()
        if len(words) == MARKER_REPLY_TOKENS and len(set(words)) == 1 and words[0] in self._markers:
            return "ok", self._markers[words[0]]
        return "wrong_content", ""

    def _send_plain(self, client: httpx.Client, text: str, started: float) -> Outcome:
        try:
            response = client.post(
                self._url, json=self._request_body(text, False), headers=self._headers
            )
        except httpx.HTTPError as exc:
            return Outcome(started, time.monotonic(), False, _transport_result(exc))
        ended = time.monotonic()
        instance = response.headers.get("x-berth-instance", "")
        if response.status_code != 200:
            return Outcome(
                started, ended, False, f"http_{response.status_code}", _error_code(response)
            )
        body = response.json()
        content = body["choices"][0]["message"]["content"]
        result, checkpoint = self._check_reply(text, content)
        return Outcome(
            started, ended, False, result, "", instance, body.get("model", ""), checkpoint
        )

    def _send_streamed(self, client: httpx.Client, text: str, started: float) -> Outcome:
        pieces: list[str] = []
        model = ""
        try:
            with client.stream(
                "POST", self._url, json=self._request_body(text, True), headers=self._headers
            ) as response:
                instance = response.headers.get("x-berth-instance", "")
                if response.status_code != 200:
                    response.read()
                    return Outcome(
                        started,
                        time.monotonic(),
                        True,
                        f"http_{response.status_code}",
                        _error_code(response),
                    )
                done = False
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line.removeprefix("data: ")
                    if data == "[DONE]":
                        done = True
                        continue
                    event = orjson.loads(data)
                    if "error" in event:
                        code = str(event["error"].get("code") or "")
                        return Outcome(
                            started, time.monotonic(), True, "stream_error", code, instance
                        )
                    model = event.get("model", model)
                    for choice in event.get("choices", []):
                        pieces.append(choice.get("delta", {}).get("content") or "")
        except httpx.HTTPError as exc:
            result = "stream_cut" if pieces else _transport_result(exc)
            return Outcome(started, time.monotonic(), True, result)
        ended = time.monotonic()
        if not done:
            return Outcome(started, ended, True, "stream_cut", "", instance)
        result, checkpoint = self._check_reply(text, "".join(pieces))
        return Outcome(started, ended, True, result, "", instance, model, checkpoint)


def _transport_result(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "refused"
    return "cut"


def _error_code(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
    except ValueError:
        return ""
    return str(error.get("code") or "") if isinstance(error, dict) else ""
