"""Bucketed route deadlines: never early, at most a tick late, one loop timer per bucket."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from weft.proxy.deadlines import COARSE_AFTER, COARSE_TICKS, TICK, Deadline, Deadlines


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Run a coroutine on the default loop and on uvloop (the proxy's)."""
    if request.param == "uvloop":
        return uvloop.run
    return asyncio.run


def test_a_deadline_fires_not_before_its_time_and_within_a_tick_after(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> list[float]:
        deadlines = Deadlines()
        fired: asyncio.Queue[float] = asyncio.Queue()
        now = time.monotonic()
        delays = (0.02, 0.021, 0.05)
        for delay in delays:
            when = now + delay
            deadlines.call_later(now, delay, lambda w=when: fired.put_nowait(time.monotonic() - w))
        return [await asyncio.wait_for(fired.get(), 5) for _ in delays]

    lateness = run(main())
    assert all(late >= 0 for late in lateness)
    assert all(late < TICK + 0.05 for late in lateness)  # a tick, and a loaded CI's scheduling


def test_a_deadline_a_second_or_more_away_fires_within_a_coarse_tick(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> float:
        deadlines = Deadlines()
        fired: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        now = time.monotonic()
        deadlines.call_later(now, COARSE_AFTER, lambda: fired.set_result(time.monotonic() - now))
        return await asyncio.wait_for(fired, 5)

    late = run(main()) - COARSE_AFTER
    assert 0 <= late < COARSE_TICKS * TICK + 0.05


def test_a_cancelled_deadline_does_not_fire_and_its_bucket_neighbours_do(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> list[str]:
        deadlines = Deadlines()
        fired: list[str] = []
        done = asyncio.Event()
        now = time.monotonic()
        deadlines.call_later(now, 0.01, fired.append, "kept")
        gone = deadlines.call_later(now, 0.01, fired.append, "cancelled")
        deadlines.call_later(now, 0.03, done.set)
        gone.cancel()
        gone.cancel()  # idempotent
        await asyncio.wait_for(done.wait(), 5)
        return fired

    assert run(main()) == ["kept"]


def test_a_callback_may_cancel_another_deadline_of_its_own_bucket(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> list[str]:
        deadlines = Deadlines()
        fired: list[str] = []
        done = asyncio.Event()
        now = time.monotonic()
        handles: dict[str, Deadline] = {}

        def first(name: str) -> None:
            fired.append(name)
            for other in handles.values():
                other.cancel()

        handles["a"] = deadlines.call_later(now, 0.01, first, "a")
        handles["b"] = deadlines.call_later(now, 0.01, first, "b")
        deadlines.call_later(now, 0.03, done.set)
        await asyncio.wait_for(done.wait(), 5)
        return fired

    assert len(run(main())) == 1  # whichever ran first cancelled the other


def test_deadlines_in_one_tick_share_one_loop_timer() -> None:
    async def main() -> int:
        deadlines = Deadlines()
        loop = asyncio.get_running_loop()
        armed = 0
        call_at = loop.call_at

        def counting_call_at(*args):  # type: ignore[no-untyped-def]
            nonlocal armed
            armed += 1
            return call_at(*args)

        loop.call_at = counting_call_at  # type: ignore[method-assign, assignment]
        base = (time.monotonic() // TICK + 10) * TICK  # the start of a tick, 10 ticks ahead
        now = time.monotonic()
        handles = [
            deadlines.call_later(now, base + i * TICK / 1000 - now, print) for i in range(1, 1000)
        ]
        for handle in handles:
            handle.cancel()
        return armed

    assert asyncio.run(main()) == 1


def test_a_failing_callback_is_reported_and_the_rest_of_its_bucket_still_fires() -> None:
    async def main() -> tuple[list[str], list[str]]:
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
        deadlines = Deadlines()
        fired: list[str] = []
        done = asyncio.Event()

        def fail() -> None:
            raise RuntimeError("boom")

        now = time.monotonic()
        deadlines.call_later(now, 0.01, fail)
        deadlines.call_later(now, 0.01, fired.append, "after")
        deadlines.call_later(now, 0.03, done.set)
        await asyncio.wait_for(done.wait(), 5)
        return fired, reported

    fired, reported = uvloop.run(main())
    assert fired == ["after"]
    assert reported == ["a deadline's callback failed"]


def test_no_deadline_fires_early_on_the_loop_s_millisecond_clock(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> list[float]:
        deadlines = Deadlines()
        fired: list[float] = []
        done = asyncio.Event()
        now = time.monotonic()
        first = (now // TICK + 2) * TICK
        # Each deadline a microsecond before its tick ends: its bucket fires right on it.
        whens = [first + i * TICK - 1e-6 for i in range(1, 41)]
        for when in whens:
            deadlines.call_later(now, when - now, lambda w=when: fired.append(time.monotonic() - w))
        deadlines.call_later(now, whens[-1] + 2 * TICK - now, done.set)
        await asyncio.wait_for(done.wait(), 5)
        return fired

    lateness = run(main())
    assert len(lateness) == 40
    assert min(lateness) >= 0
