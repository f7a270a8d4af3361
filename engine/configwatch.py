"""Reload mailctl.toml and domains/ when they change (DESIGN.md §3.3).

File events come from watchdog when it works; a poll of the file stamps runs as well
(every second, a few stat calls), so a missed event or a filesystem without events
still leads to a reload. A change is acted on only when the stamps really differ.
"""
from __future__ import annotations

import asyncio
import contextlib
import os

from .runtime import describe

POLL_SECONDS = 1.0
SETTLE_SECONDS = 0.05


def stamps(root) -> tuple:
    """What identifies the current configuration on disk: (name, mtime, size, inode) per file."""
    out = []
    for path in [root.config_file]:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            out.append((path.name, st.st_mtime_ns, st.st_size, st.st_ino))
    with contextlib.suppress(OSError):
        for e in sorted(os.scandir(root.domains_dir), key=lambda e: e.name):
            if e.name.endswith(".toml") and not e.name.startswith("."):
                with contextlib.suppress(OSError):
                    st = e.stat()
                    out.append((e.name, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class ConfigWatcher:
    def __init__(self, runtime, on_reload=None):
        self.runtime = runtime
        self.on_reload = on_reload
        self.kick = asyncio.Event()
        self.observer = None
        self.last = None
        self.last_problems: list[str] = []
        self.logged: set[str] = set()     # unexpected errors already logged

    def _start_events(self, loop) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            return
        kick = self.kick

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                loop.call_soon_threadsafe(kick.set)

        try:
            observer = Observer()
            observer.schedule(Handler(), str(self.runtime.root.path), recursive=False)
            if self.runtime.root.domains_dir.is_dir():
                observer.schedule(Handler(), str(self.runtime.root.domains_dir), recursive=False)
            observer.daemon = True
            observer.start()
            self.observer = observer
        except Exception as e:          # inotify limits and the like: polling still works
            self.runtime.log.info("config watch: file events unavailable (%s); polling", e)

    async def run(self) -> None:
        """Poll and reload until the server stops. Nothing a file holds ends this loop:
        an unexpected error is logged once (per distinct error) and the next poll retries."""
        rt = self.runtime
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):    # else the first poll reloads, which is harmless
            self.last = await rt.run_blocking(stamps, rt.root)
        self._start_events(loop)
        try:
            while not rt.stopping.is_set():
                try:
                    await self._poll()
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self.last = None            # retried at the next poll
                    self.last_problems = [f"config watch: {describe(e)}"]
                    self._log_once(f"{self.last_problems[0]}; still serving with the last good configuration")
                    await asyncio.sleep(POLL_SECONDS)
        finally:
            if self.observer is not None:
                self.observer.stop()

    async def _poll(self) -> None:
        rt = self.runtime
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.kick.wait(), POLL_SECONDS)
        self.kick.clear()
        await asyncio.sleep(SETTLE_SECONDS)
        now = await rt.run_blocking(stamps, rt.root)
        if now != self.last:
            self.last = now
            await self.reload("file change")

    def _log_once(self, message: str) -> None:
        if message not in self.logged:
            self.logged.add(message)
            self.runtime.log.error("%s", message)

    async def reload(self, why: str) -> list[str]:
        rt = self.runtime
        before = rt.settings
        problems = await rt.run_blocking(rt.reload)
        if problems:
            for p in problems:
                rt.log.error("%s", p)
            rt.log.error("reload (%s): %d problem%s; each file named keeps its last good version",
                         why, len(problems), "" if len(problems) == 1 else "s")
        else:
            rt.log.info("configuration reloaded (%s)", why)
            self.logged.clear()
        if self.on_reload is not None and (rt.settings is not before or not problems):
            self.on_reload()
        self.last_problems = problems
        return problems
