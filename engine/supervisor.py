"""The serving processes of a supervisor: started, watched, replaced when they die.

Each serving process gets one slot (1..N) in run/counts.shm, the listening sockets (passed
as inherited file descriptors) and the user to become. Slot 1 also runs the workers (the
queue runner and the pickup folder). A serving process that dies for any reason is
replaced at once; one that keeps dying soon after its start is restarted after a growing
pause, so a crash loop does not spin.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time

from . import control
from .errors import MailError

log = logging.getLogger("mailctl")

WORKER_SLOT = 1           # the serving process that also runs the queue runner and pickup
QUICK_DEATH_S = 10.0      # a process that dies sooner than this after its start counts as a crash loop
MAX_PAUSE_S = 30.0
START_TIMEOUT_S = 30.0
POLL_S = 0.5


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Children:
    def __init__(self, root, sockets: dict[str, list], account, count: int, log_stderr: bool,
                 on_exit=None, halt: asyncio.Event | None = None):
        self.root = root
        self.sockets = sockets               # listener name -> the sockets the supervisor bound
        self.account = account               # privileges.Account to become, or None
        self.count = count
        self.log_stderr = log_stderr
        self.on_exit = on_exit               # fn(slot): forget what the dead process left
        self.procs: dict[int, subprocess.Popen] = {}
        self.started_at: dict[int, float] = {}
        self.quick_deaths: dict[int, int] = {}
        self.due: dict[int, float] = {}      # slot -> when its replacement starts
        self.restarts = 0
        self.last_exit: dict | None = None
        self.stopping = False
        self.halt = halt or asyncio.Event()  # set when the server stops: nothing is replaced any more

    def slots(self) -> list[int]:
        return sorted(self.procs)

    def pids(self) -> list[int]:
        return [self.procs[s].pid for s in self.slots()]

    def start_all(self) -> None:
        for slot in range(1, self.count + 1):
            self.spawn(slot)
        log.info("started %d serving processes: %s", len(self.procs), ", ".join(map(str, self.pids())))

    def spawn(self, slot: int) -> None:
        """Called on the main thread only: a child's PR_SET_PDEATHSIG follows the thread
        that forked it, not the process."""
        fds = {name: [s.fileno() for s in socks] for name, socks in self.sockets.items()}
        spec = {"slot": slot, "fds": fds, "workers": slot == WORKER_SLOT, "stderr": self.log_stderr,
                "parent": os.getpid(), "user": self.account.as_list() if self.account else None}
        self.procs[slot] = subprocess.Popen(
            [sys.executable, "-m", "mailctl", "--root", str(self.root.path), "serve", "--child", json.dumps(spec)],
            stdin=subprocess.DEVNULL, pass_fds=[fd for group in fds.values() for fd in group])
        self.started_at[slot] = time.monotonic()

    async def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until every serving process answers on its control socket; one that exits
        first fails the start (a certificate it cannot read, a root it cannot reach)."""
        waiting = set(self.procs)
        deadline = time.monotonic() + timeout
        while waiting:
            for slot in list(waiting):
                proc = self.procs[slot]
                if proc.poll() is not None:
                    await self.stop(5)
                    raise MailError(f"serving process {proc.pid} {how_it_ended(proc.returncode)} at start; "
                                    f"see {self.root.log_dir}/mailctl.log")
                with contextlib.suppress(OSError, MailError, asyncio.TimeoutError, ValueError):
                    await control.ask(control.socket_path(self.root, slot), "status-local", timeout=1)
                    waiting.discard(slot)
            if time.monotonic() > deadline:
                await self.stop(5)
                raise MailError(f"the serving processes did not start within {timeout:g}s; "
                                f"see {self.root.log_dir}/mailctl.log")
            if waiting:
                await asyncio.sleep(0.05)

    async def watch(self) -> None:
        """Reap dead serving processes and start their replacements (SIGCHLD wakes us)."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGCHLD, wake.set)
        try:
            while not self.stopping:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), POLL_S)
                wake.clear()
                if self.stopping or self.halt.is_set():
                    break
                self.reap()
                now = time.monotonic()
                for slot, when in list(self.due.items()):
                    if when <= now:
                        del self.due[slot]
                        self.spawn(slot)
                        log.info("serving process %d started in slot %d", self.procs[slot].pid, slot)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGCHLD)

    def reap(self) -> None:
        now = time.monotonic()
        for slot, proc in list(self.procs.items()):
            if proc.poll() is None:
                continue
            del self.procs[slot]
            if self.on_exit is not None:
                self.on_exit(slot)
            if self.halt.is_set():            # Ctrl-C reaches the whole process group
                log.info("serving process %d (slot %d) %s", proc.pid, slot, how_it_ended(proc.returncode))
                continue
            lived = now - self.started_at[slot]
            quick = self.quick_deaths[slot] = self.quick_deaths.get(slot, 0) + 1 if lived < QUICK_DEATH_S else 0
            pause = 0.0 if quick <= 1 else min(MAX_PAUSE_S, 2.0 ** (quick - 2))
            self.restarts += 1
            how = how_it_ended(proc.returncode)
            self.last_exit = {"pid": proc.pid, "slot": slot, "how": how, "at": time.time()}
            log.warning("serving process %d (slot %d) %s after %.1fs; starting a new one%s (restart %d)",
                        proc.pid, slot, how, lived,
                        f" in {pause:g}s: it keeps dying at start" if pause else "", self.restarts)
            self.due[slot] = now + pause

    async def stop(self, deadline: float) -> None:
        """SIGTERM to every serving process (each finishes its transactions in flight),
        SIGKILL to any still there after deadline."""
        self.stopping = True
        self.due.clear()
        for proc in self.procs.values():
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        for proc in self.procs.values():
            try:
                await loop.run_in_executor(None, proc.wait, deadline)
            except subprocess.TimeoutExpired:
                log.warning("serving process %d did not stop within %gs; killing it", proc.pid, deadline)
                proc.kill()
                await loop.run_in_executor(None, proc.wait)

    def signal_all(self, sig: int) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(OSError):
                proc.send_signal(sig)
