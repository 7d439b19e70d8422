"""The statistics lane: a cancelled caller still waits for the lane thread, so locks it holds stay held."""

from __future__ import annotations

import asyncio
import threading

import pytest

from lrr_service.service.lane import BACKGROUND_NICENESS, StatisticsLane


async def test_cancelled_run_returns_only_after_the_thread_finished() -> None:
    lane = StatisticsLane()
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    lock = asyncio.Lock()

    def work() -> str:
        started.set()
        release.wait()
        finished.set()
        return "done"

    async def caller() -> str:
        async with lock:
            return await lane.run(work)

    try:
        task = asyncio.create_task(caller())
        assert await asyncio.to_thread(started.wait, 30)
        task.cancel()
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done() and lock.locked()  # the thread still runs: the lock must stay held
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished.is_set() and not lock.locked()
    finally:
        release.set()
        lane.shutdown()


async def test_run_returns_the_result_and_raises_the_exception() -> None:
    lane = StatisticsLane()
    try:
        assert await lane.run(sum, [1, 2, 3]) == 6
        with pytest.raises(ZeroDivisionError):
            await lane.run(divmod, 1, 0)
    finally:
        lane.shutdown()


async def test_lane_thread_runs_below_the_event_loop_priority() -> None:
    import os

    lane = StatisticsLane()
    try:

        def own_niceness() -> int:
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        def own_policy() -> int:
            return os.sched_getscheduler(threading.get_native_id())

        loop_niceness = own_niceness()
        assert await lane.run(own_niceness) == min(loop_niceness + BACKGROUND_NICENESS, 19)
        assert own_policy() == os.SCHED_OTHER and await lane.run(own_policy) == os.SCHED_IDLE
    finally:
        lane.shutdown()
