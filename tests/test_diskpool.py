"""The worker threads of a serving process (engine/diskpool.py): results and errors reach
the awaiting coroutine, no more threads than allowed, a job cancelled before a thread
took it never runs, and shutdown finishes what was given."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from engine.diskpool import DiskPool


def test_results_and_errors_reach_the_awaiting_coroutine():
    pool = DiskPool(2, "t")

    def boom():
        raise OSError(28, "No space left on device")

    async def main():
        assert await pool.run(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(OSError) as e:
            await pool.run(boom)
        assert e.value.errno == 28
    try:
        asyncio.run(main())
    finally:
        pool.shutdown()


def test_no_more_threads_than_allowed_and_all_jobs_run():
    pool = DiskPool(3, "t")
    running, most = [0], [0]
    lock = threading.Lock()

    def job(i):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i, threading.current_thread().name

    async def main():
        return await asyncio.gather(*[pool.run(job, i) for i in range(20)])
    try:
        results = asyncio.run(main())
    finally:
        pool.shutdown()
    assert [i for i, _ in results] == list(range(20))
    assert most[0] == 3                                   # busy enough to use them all, never more
    assert len({name for _, name in results}) == 3


def test_a_job_cancelled_before_a_thread_takes_it_does_not_run():
    pool = DiskPool(1, "t")
    gate = threading.Event()
    ran = []

    async def main():
        first = pool.run(gate.wait, 10)                   # holds the only thread
        second = pool.run(ran.append, "second")
        second.cancel()
        gate.set()
        await first
        await pool.run(lambda: None)                      # queued after it: it was skipped by now
    try:
        asyncio.run(main())
    finally:
        pool.shutdown()
    assert ran == []


def test_shutdown_finishes_the_jobs_given_and_refuses_new_ones():
    pool = DiskPool(1, "t")
    done = []
    for i in range(5):
        pool.submit(lambda i=i: (time.sleep(0.01), done.append(i)))
    pool.shutdown(wait=True)
    assert done == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError):
        pool.submit(print)
