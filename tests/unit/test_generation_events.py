"""How generated text travels from the worker thread to the event loop.

Without stop sequences the worker decodes tokens in groups after the first text. The
first text of a stream and every other event wake the loop at once. Later texts
wait for the loop's next tick, and the loop joins the texts that piled up meanwhile,
so the worker does not wake the loop for every token.
"""

import asyncio
import threading

import pytest

from berth.runtime import threaded
from berth.runtime.base import GenerationParams
from berth.runtime.threaded import GenerationJob, TokenTextSender, _Finished, _Started, _Text
from tests.support import wait_until_async

pytestmark = pytest.mark.anyio


def _drain(job: GenerationJob) -> list[object]:
    events = []
    while not job.events.empty():
        events.append(job.events.get_nowait())
    return events


async def test_texts_emitted_together_are_joined() -> None:
    job = GenerationJob(asyncio.get_running_loop())

    def worker() -> None:
        job.emit(_Started(prompt_tokens=3))
        for piece in ("Hel", "lo", " world"):
            job.emit(_Text(piece))
        job.emit(_Finished("stop", completion_tokens=3))

    # The loop is blocked in join(), so all five events arrive in one move.
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    await asyncio.sleep(0)

    assert _drain(job) == [_Started(3), _Text("Hello world"), _Finished("stop", 3)]


def _settle(loop: asyncio.AbstractEventLoop) -> None:
    """From the worker: return once the loop has run the callbacks scheduled so far."""
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=5)


async def test_later_texts_wait_for_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No tick comes during the test, so only a wake-up can deliver a text.
    monkeypatch.setattr(threaded, "TEXT_INTERVAL_S", 60.0)
    loop = asyncio.get_running_loop()
    job = GenerationJob(loop)
    first_received = threading.Event()

    def worker() -> None:
        job.emit(_Started(prompt_tokens=3))
        job.emit(_Text("one"))
        first_received.wait(timeout=5)
        job.emit(_Text("two"))
        _settle(loop)
        job.emit(_Text("three"))
        _settle(loop)
        job.emit(_Finished("length", completion_tokens=3))

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        received = [await asyncio.wait_for(job.events.get(), timeout=5) for _ in range(2)]
        first_received.set()
        received += [await asyncio.wait_for(job.events.get(), timeout=5) for _ in range(2)]
    finally:
        first_received.set()
        thread.join(timeout=5)

    # "two" and "three" were held until the finish event woke the loop.
    assert received == [_Started(3), _Text("one"), _Text("twothree"), _Finished("length", 3)]


async def _job_after_first_text(monkeypatch: pytest.MonkeyPatch) -> GenerationJob:
    """A job with ticks every 10 ms whose first text reached the loop."""
    monkeypatch.setattr(threaded, "TEXT_INTERVAL_S", 0.01)
    job = GenerationJob(asyncio.get_running_loop())
    job.emit(_Text("one"))
    assert await asyncio.wait_for(job.events.get(), timeout=5) == _Text("one")
    return job


async def test_ticks_deliver_text_while_the_stream_generates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = await _job_after_first_text(monkeypatch)
    job.emit(_Text("two"))

    # No event follows, so only a tick can deliver "two".
    assert await asyncio.wait_for(job.events.get(), timeout=5) == _Text("two")


async def test_idle_ticks_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = await _job_after_first_text(monkeypatch)

    await wait_until_async(lambda: not job._tick_pending)
    monkeypatch.setattr(threaded, "TEXT_INTERVAL_S", 60.0)
    job.emit(_Text("two"))

    assert await asyncio.wait_for(job.events.get(), timeout=5) == _Text("two")


async def test_emit_after_loop_closed_cancels_job() -> None:
    loop = asyncio.new_event_loop()
    job = GenerationJob(loop)
    loop.close()

    job.emit(_Text("late"))

    assert job.cancelled.is_set()


class RecordingJob:
    """Stands in for GenerationJob: records what the sender emits, in order."""

    def __init__(self) -> None:
        self.emitted: list[object] = []
        self.cancelled = threading.Event()

    def emit(self, event: object) -> None:
        self.emitted.append(event)


class ByteTokenizer:
    """Tokens are UTF-8 bytes."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def _sender(job: RecordingJob, stop: tuple[str, ...] = ()) -> TokenTextSender:
    params = GenerationParams(max_tokens=None, temperature=0.0, top_p=1.0, stop=stop, seed=None)
    return TokenTextSender(job, ByteTokenizer(), list(b"x "), params, frozenset(), False)  # type: ignore[arg-type]


def test_tokens_decoded_in_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(threaded, "TEXT_INTERVAL_S", 60.0)
    job = RecordingJob()
    sender = _sender(job)

    # The three bytes of "€" give no text until the last one; that text leaves at once.
    for token in "€bc".encode():
        assert sender.push(token)
    assert job.emitted == [_Text("€")]

    sender.finish()
    assert job.emitted == [_Text("€"), _Text("bc"), _Finished("length", 5)]


def test_each_token_is_decoded_once_the_interval_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threaded, "TEXT_INTERVAL_S", 0.0)
    job = RecordingJob()
    sender = _sender(job)

    for token in b"abc":
        sender.push(token)

    assert job.emitted == [_Text("a"), _Text("b"), _Text("c")]


def test_stop_sequences_are_checked_at_every_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threaded, "TEXT_INTERVAL_S", 60.0)
    job = RecordingJob()
    sender = _sender(job, stop=("c",))

    assert sender.push(ord("a"))
    assert sender.push(ord("b"))
    assert not sender.push(ord("c"))

    assert job.cancelled.is_set()
    assert job.emitted == [_Text("a"), _Text("b")]
