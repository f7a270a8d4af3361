"""Learning from users: a message a user files as spam or as not spam over IMAP
(engine/imap/junklearn.py decides which) is told to the learners of [spam_learn] (rspamd's
controller, spamd's TELL: engine/scan/learn.py), in the background.

On disk, state/learn/ holds one file per message to learn:

    <kind>.<time_ns>.<pid>.<n>     kind = spam or ham

a hard link to the message file (a copy when no link can be made), written by the IMAP
command in its disk thread: one link, so the command does not wait for any scanner, and
the content stays even when the user expunges the message at once. The 'spam_learn'
worker (one serving process) takes the files oldest first, tells every learner, and
removes a file once each learner has it (learned, or known already: both learners
deduplicate, so telling one twice after a crash is harmless). A learner that fails is
asked again after retry_s; a file no learner took within keep_hours is dropped, logged.
Learning is never mail: nothing here can refuse, delay or lose a message.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import time
from pathlib import Path

from . import nofollow
from .scan import learn
from .scan.verdict import ScanFailed

log = logging.getLogger("mailctl.learn")
DIRNAME = "learn"
POLL_S = 1.0
_NAME = re.compile(r"(spam|ham)\.(\d{1,20})\.\d{1,10}\.\d{1,12}\Z")
_serial = itertools.count(1)


def spool_dir(root) -> Path:
    return Path(root.state_dir) / DIRNAME


def learners(cfg) -> list[tuple[str, object]]:
    """(name, function(kind, message)) of every learner [spam_learn] names."""
    out = []
    if cfg.rspamd_controller:
        out.append(("rspamd", lambda kind, data: learn.rspamd_learn(cfg.rspamd_controller, kind, data,
                                                                      float(cfg.timeout_s))))
    if cfg.spamd:
        out.append(("spamd", lambda kind, data: learn.spamd_tell(cfg.spamd, kind, data, float(cfg.timeout_s),
                                                                 cfg.spamd_user)))
    return out


def active(settings) -> bool:
    cfg = settings.spam_learn
    return bool(cfg.enabled and (cfg.rspamd_controller or cfg.spamd))


def enqueue(root, settings, kind: str, message_path: str | os.PathLike, size: int) -> bool:
    """Put one message up for learning as kind (in a disk thread). False when it is not
    (learning off, too large, or the file could not be linked nor copied: logged; the
    IMAP command that moved it has done its work all the same)."""
    cfg = settings.spam_learn
    if kind not in learn.KINDS or not active(settings) or size > cfg.max_size_kb * 1024:
        return False
    spool = spool_dir(root)
    target = spool / f"{kind}.{time.time_ns()}.{os.getpid()}.{next(_serial)}"
    try:
        spool.mkdir(mode=0o700, exist_ok=True)
        nofollow.check_dirs(root.path, spool)
        try:
            os.link(message_path, target, follow_symlinks=False)
        except OSError:                   # another file system, or links not allowed: a copy
            data = nofollow.read_bytes(message_path, quiet=True)
            fd = nofollow.open_file(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, quiet=True)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except (OSError, ValueError) as e:
        log.warning("learn: a message moved as %s is not learned: %s", kind, getattr(e, "strerror", None) or e)
        return False
    return True


class Learner:
    """The worker's state: when each file may be tried again and which learners have it."""

    def __init__(self, root, settings_fn, count=lambda name, n=1: None, clock=time.time):
        self.dir = spool_dir(root)
        self.root = root
        self.settings_fn, self.count, self.clock = settings_fn, count, clock
        self.done: dict[str, set[str]] = {}       # file name -> learners that have it
        self.retry_at: dict[str, float] = {}      # file name -> when to try it again
        self.failing: set[str] = set()            # learners whose failure was logged (once)

    def due(self) -> list[str]:
        """The files to try now, oldest first."""
        now = self.clock()
        try:
            names = nofollow.list_files(self.dir.parent, DIRNAME)
        except FileNotFoundError:         # none yet (or a link there: refused and reported)
            return []
        for gone in set(self.retry_at) - set(names):
            self.retry_at.pop(gone, None)
            self.done.pop(gone, None)
        ready = [n for n in names if self.retry_at.get(n, 0) <= now]
        return sorted(ready, key=lambda n: int(m.group(2)) if (m := _NAME.match(n)) else 0)

    def take(self, name: str) -> str:
        """Tell every learner about one file; what became of it (for tests and the log)."""
        cfg = self.settings_fn().spam_learn
        path = self.dir / name
        found = _NAME.match(name)
        if not found:
            self._remove(path)
            return "not ours"
        kind, made = found.group(1), int(found.group(2)) / 1e9
        if self.clock() - made > cfg.keep_hours * 3600:
            self._remove(path)
            log.warning("learn: a message to learn as %s waited %g hours for the learners; dropped", kind,
                        cfg.keep_hours)
            self.count("learn_dropped")
            return "dropped"
        try:
            data = nofollow.read_bytes(path, quiet=True)
        except OSError:
            self._remove(path)            # a link, or gone: nothing to learn
            return "unreadable"
        have = self.done.setdefault(name, set())
        for who, tell in learners(cfg):
            if who in have:
                continue
            try:
                result = tell(kind, data)
            except ScanFailed as e:
                if who not in self.failing:
                    log.warning("learn: %s; trying again every %g s", e, cfg.retry_s)
                    self.failing.add(who)
                self.count("learn_failed")
                continue
            if who in self.failing:
                log.info("learn: %s answers again", who)
                self.failing.discard(who)
            have.add(who)
            self.count(f"learned_{kind}" if result == learn.LEARNED else "learn_known")
        if {who for who, _ in learners(cfg)} <= have:
            self._remove(path)
            self.done.pop(name, None)
            self.retry_at.pop(name, None)
            return "told"
        self.retry_at[name] = self.clock() + cfg.retry_s
        return "waiting"

    def _remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


async def run(runtime) -> None:
    """The 'spam_learn' worker: take state/learn/ until runtime.stopping is set."""
    learner = Learner(runtime.root, lambda: runtime.settings, runtime.count)
    while not runtime.stopping.is_set():
        if active(runtime.settings):
            for name in await runtime.run_blocking(learner.due):
                if runtime.stopping.is_set():
                    break
                await runtime.run_blocking(learner.take, name)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(runtime.stopping.wait(), POLL_S)
