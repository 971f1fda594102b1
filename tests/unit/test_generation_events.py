"""How generated text travels from the worker thread to the event loop.

The first text of a stream and every other event wake the loop at once. Later texts
wait for the loop's next tick, and the loop joins the texts that piled up meanwhile,
so the worker does not wake the loop for every token.
"""

import asyncio
import threading

import pytest

from berth.runtime import threaded
from berth.runtime.threaded import GenerationJob, _Finished, _Started, _Text
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


async def test_first_text_leaves_at_once_and_later_ones_wait_for_the_tick(
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


async def test_ticks_deliver_text_while_the_stream_generates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(threaded, "TEXT_INTERVAL_S", 0.01)
    job = GenerationJob(asyncio.get_running_loop())

    job.emit(_Text("one"))
    assert await asyncio.wait_for(job.events.get(), timeout=5) == _Text("one")
    job.emit(_Text("two"))

    # No event follows, so only a tick can deliver "two".
    assert await asyncio.wait_for(job.events.get(), timeout=5) == _Text("two")


async def test_ticks_stop_when_idle_and_the_next_text_leaves_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(threaded, "TEXT_INTERVAL_S", 0.01)
    job = GenerationJob(asyncio.get_running_loop())
    job.emit(_Text("one"))
    assert await asyncio.wait_for(job.events.get(), timeout=5) == _Text("one")

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
