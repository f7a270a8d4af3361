"""The worker threads a serving process runs blocking work in (disk writes, fsync,
password hashing), so the event loop never waits on them.

What asyncio's run_in_executor does, without its costs per call: a ThreadPoolExecutor
makes a concurrent Future (a Condition, a lock and their Python code) for every job and
asyncio chains it to an asyncio Future; at every message an SMTP session hands over,
that was a seventh of the event loop's time. Here a job is a tuple on a queue and its
result goes straight to the awaiting asyncio Future through call_soon_threadsafe.
"""
from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from typing import Any, Callable


class DiskPool:
    """Up to `workers` threads, started as jobs need them; jobs run in the order given."""

    def __init__(self, workers: int, name: str):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._max = max(1, workers)
        self._name = name
        self._threads: list[threading.Thread] = []
        self._idle = 0                      # threads waiting for a job
        self._mutex = threading.Lock()      # guards _threads, _idle, _closed
        self._closed = False

    def run(self, fn: Callable, *args) -> asyncio.Future:
        """fn(*args) in a worker thread: a Future of the running loop with its result.
        Cancelled before a thread takes it, the job does not run."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._put((loop, done, fn, args))
        return done

    def submit(self, fn: Callable, *args) -> None:
        """fn(*args) in a worker thread, nobody waiting for it (an exception is dropped)."""
        self._put((None, None, fn, args))

    def shutdown(self, wait: bool = True) -> None:
        """Stop every thread once the jobs already given are done."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        if wait:
            for t in threads:
                if t is not threading.current_thread():
                    t.join()

    def _put(self, job) -> None:
        with self._mutex:
            if self._closed:
                raise RuntimeError("cannot run new work after shutdown")
            if self._idle == 0 and len(self._threads) < self._max:
                t = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
            else:
                self._idle = max(0, self._idle - 1)     # that thread is this job's
            self._jobs.put(job)

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            loop, done, fn, args = job
            if done is None:
                with contextlib.suppress(BaseException):
                    fn(*args)
            elif not done.cancelled():         # a look from this thread: at worst the job runs
                try:
                    result = fn(*args)
                except BaseException as e:  # noqa: BLE001 - handed to whoever awaits it
                    _post(loop, done, None, e)
                else:
                    _post(loop, done, result, None)
            del job, loop, done, fn, args     # nothing of it kept while this thread waits
            with self._mutex:
                self._idle += 1


def _post(loop, done: asyncio.Future, result: Any, error: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):    # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, done, result, error)


def _settle(done: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if done.cancelled():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)
