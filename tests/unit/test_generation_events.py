"""How generated text travels from the worker thread to the event loop.

The worker wakes the loop only when its buffer was empty, and the loop joins the texts
that piled up meanwhile, so a busy loop receives fewer, longer pieces and a waiting one
receives each token at once.
"""

import asyncio
import threading

import pytest

from berth.runtime.threaded import GenerationJob, _Finished, _Started, _Text

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


async def test_waiting_loop_gets_each_text_at_once() -> None:
    job = GenerationJob(asyncio.get_running_loop())
    received: list[object] = []
    next_token = threading.Event()

    def worker() -> None:
        for piece in ("one", "two", "three"):
            job.emit(_Text(piece))
            next_token.wait(timeout=5)
            next_token.clear()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        for _ in range(3):
            received.append(await asyncio.wait_for(job.events.get(), timeout=5))
            next_token.set()
    finally:
        next_token.set()
        thread.join(timeout=5)

    assert received == [_Text("one"), _Text("two"), _Text("three")]


async def test_emit_after_loop_closed_cancels_job() -> None:
    loop = asyncio.new_event_loop()
    job = GenerationJob(loop)
    loop.close()

    job.emit(_Text("late"))

    assert job.cancelled.is_set()
