"""The pickup folder: any program drops NAME.eml into pickup/ and it is sent.

Writers should write NAME.tmp (or any name not ending in .eml) and rename it to
NAME.eml when complete; a file is also only taken once its size and mtime have not
changed for pickup.settle_seconds, so a slow writer is not cut short.

Taking a file, step by step (a crash at any instant neither loses nor doubles it):
  1. claim: rename pickup/NAME.eml -> pickup/.work/<token>--NAME.eml (one process wins)
  2. stage every local copy (Maildir tmp/) and the queue item (body), all fsync'd
  3. write pickup/.work/<token>--NAME.commit (fsync'd) listing what was staged
  4. commit the staged copies and the queue envelope
  5. remove the .work file, then the marker
At start, a .work file with a .commit marker is finished from the marker (copies still
in tmp/ are committed, a missing queue envelope is written); one without a marker was
never committed anywhere and is taken again from the start.
A file that cannot be taken goes to pickup/failed/NAME.eml with NAME.eml.error saying why.
A full or read-only disk is not the file's fault: it stays in pickup/ (logged once) and
is taken at a later pass, once there is room.

The envelope comes from X-Sender / X-Receiver when present (hMailServer's convention;
they are removed), else from From and To/Cc/Bcc. Bcc is removed.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import stat
import time
from pathlib import Path

from .storage_errors import is_storage_fault
from .errors import InvalidInput, MailError
from .root import atomic_write, fsync_dir
from .settings import MESSAGE_SIZE_CEILING

log = logging.getLogger("mailctl.pickup")
MAX_FILE = MESSAGE_SIZE_CEILING


class Pickup:
    def __init__(self, root, settings_fn, directory_fn, clock=time.time, pipeline=None):
        self.root = root
        self.dir = root.pickup_dir
        self.work = self.dir / ".work"
        self.failed = self.dir / "failed"
        self.settings_fn, self.directory_fn = settings_fn, directory_fn
        self.clock = clock
        self.pipeline = pipeline          # the acceptance pipeline (None: the standard one)
        self.seen: dict[str, tuple[int, int, float]] = {}      # name -> (size, mtime_ns, first seen stable)
        self.taken = 0
        self.rejected = 0
        self.waiting: set[str] = set()        # files left in pickup/ for want of room (logged once)

    def ensure(self) -> None:
        for d in (self.dir, self.work, self.failed):
            d.mkdir(parents=True, exist_ok=True)

    # -- finding files ready to take --
    def ready(self) -> list[str]:
        """Names of *.eml files whose size and mtime have been stable for settle_seconds."""
        settle = float(self.settings_fn().pickup.settle_seconds)
        now = time.time()
        out = []
        present = set()
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return []
        for e in entries:
            if not e.name.lower().endswith(".eml") or e.name.startswith("."):
                continue
            present.add(e.name)
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            key = (st.st_size, st.st_mtime_ns)
            prev = self.seen.get(e.name)
            if prev is None or prev[:2] != key:
                self.seen[e.name] = (*key, now)
                if settle > 0:
                    continue
            first_stable = self.seen[e.name][2]
            if settle <= 0 or (now - first_stable >= settle and now - st.st_mtime >= settle):
                out.append(e.name)
        for name in list(self.seen):
            if name not in present:
                del self.seen[name]
        self.waiting &= present
        return sorted(out)

    # -- taking one file (blocking) --
    def take(self, name: str) -> str | None:
        """Claim and send pickup/name. Returns a one-line summary, or None if another
        process took it first."""
        self.ensure()
        token = f"{int(time.time() * 1e6):x}.{os.getpid()}.{secrets.token_hex(4)}--{name[:-4][:180]}"
        work = self.work / f"{token}.eml"
        src = self.dir / name
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            return None
        try:
            os.rename(src, work)
        except FileNotFoundError:
            return None
        except OSError as e:
            if not is_storage_fault(e):
                raise
            return self._wait_for_room(None, name, e)
        self.seen.pop(name, None)
        return self._process(token, name, st)

    def _process(self, token: str, name: str, st=None) -> str:
        from .accept import local
        work = self.work / f"{token}.eml"
        try:
            data = _read_plain_file(work, st or os.lstat(work))
            prepared, outcome = local.send_message(
                self.root, self.settings_fn(), self.directory_fn(), data, use_x_headers=True, source="pickup",
                origin="localhost", pipeline=self.pipeline, wake=False,      # run() wakes the runner
                before_commit=lambda staged, queued: self._mark(token, staged, queued))
            if not outcome.delivered and not outcome.queue_id:
                raise InvalidInput("no recipient accepted: " + "; ".join(
                    f"{k}: {v}" for k, v in outcome.rejected.items()))
        except (InvalidInput, OSError, UnicodeError) as e:
            self._drop_marker(token)
            if is_storage_fault(e):
                return self._wait_for_room(token, name, e)
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            try:
                self._fail(token, name, why)
            except OSError as note_error:
                if not is_storage_fault(note_error):
                    raise
                return self._wait_for_room(token, name, note_error)     # its .error note does not fit
            return f"{name}: refused: {why}"
        except MailError as e:
            # not the file's fault (quota, lock timeout...): leave it for the next pass
            log.error("pickup %s: %s; will try again", name, e)
            self._drop_marker(token)
            self._unclaim(token, name)
            return f"{name}: retry later: {e}"
        self._cleanup(token)
        self.taken += 1
        self.waiting.discard(name)
        parts = []
        if outcome.delivered:
            parts.append(f"delivered to {len(outcome.delivered)} mailbox(es)")
        if outcome.queue_id:
            parts.append(f"queued {outcome.queue_id} for {len(outcome.external)} recipient(s)")
        for k, v in outcome.rejected.items():
            parts.append(f"{k}: {v}")
        log.info("pickup %s: from=<%s> %s", name, prepared.sender, "; ".join(parts))
        return f"{name}: " + "; ".join(parts)

    def _mark(self, token: str, staged, queued) -> None:
        """Step 3: record, durably, what is staged, before anything is committed."""
        record = {"maildir": [{"address": address, "folder": item.folder.name,
                               "tmp": self.root.relative(item.tmp_path), "base": item.base,
                               "size": item.size, "to_cur": item.to_cur, "flags": sorted(item.flags)}
                              for address, item in staged],
                  "queues": [item.envelope.to_dict() for item in queued]}
        atomic_write(self.work / f"{token}.commit", json.dumps(record))

    def _drop_marker(self, token: str) -> None:
        with contextlib.suppress(OSError):        # one left behind is dropped at the next start
            os.unlink(self.work / f"{token}.commit")

    def _finish(self, token: str) -> None:
        """Complete step 4 after a crash, from the marker (each part is idempotent)."""
        from .maildir import Maildir, Staged
        from .queue import STATES, Envelope, Queue
        record = json.loads((self.work / f"{token}.commit").read_text("utf-8"))
        for m in record.get("maildir", []):
            tmp = self.root.inside(m["tmp"])
            if not tmp.exists():
                continue                              # committed before the crash
            local, _, domain = m["address"].rpartition("@")
            folder = Maildir.for_account(self.root, domain, local).folder(m["folder"])
            try:
                Staged(folder, tmp, m["base"], frozenset(m.get("flags", [])), m["size"], m["to_cur"]).commit()
            except FileExistsError:
                os.unlink(tmp)                        # linked, not yet unlinked from tmp/
        old = record.get("queue")                     # a marker an earlier version wrote
        for q in record.get("queues", [old] if old else []):
            queue = Queue(self.root)
            known = any(queue.envelope_path(q["id"], s).exists() for s in STATES)
            if not known and queue.body_path(q["id"]).exists():
                queue.write(Envelope.from_dict(q, "deferred"))
        log.warning("pickup: finished a delivery interrupted by a crash (%s)", token)

    def _cleanup(self, token: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.work / f"{token}.eml")
        fsync_dir(self.work)
        self._drop_marker(token)

    def _wait_for_room(self, token: str | None, name: str, e: OSError) -> str:
        """Not the file's fault: back to pickup/ (when claimed), for a later pass."""
        if token is not None:
            self._unclaim(token, name)
        if name not in self.waiting:
            self.waiting.add(name)
            log.warning("pickup %s: %s; it stays in pickup/ until there is room", name, e.strerror)
        return f"{name}: waiting for room on the disk"

    def _unclaim(self, token: str, name: str) -> None:
        with contextlib.suppress(OSError):
            os.rename(self.work / f"{token}.eml", self.dir / name)

    def _fail(self, token: str, name: str, why: str) -> None:
        self.rejected += 1
        safe = name.replace("/", "_")
        dest = self.failed / safe
        if dest.exists() or (self.failed / f"{safe}.error").exists():
            dest = self.failed / f"{Path(safe).stem}.{token}.eml"
        atomic_write(self.failed / f"{dest.name}.error", f"{name}: {why}\n")
        os.rename(self.work / f"{token}.eml", dest)
        fsync_dir(self.failed)
        log.warning("pickup %s: moved to pickup/failed/%s: %s", name, dest.name, why)

    def recover(self) -> int:
        """Finish what a crash interrupted: a marker means staged and maybe partly
        committed (finish it); no marker means nothing was committed (take it again)."""
        self.ensure()
        redone = 0
        for p in sorted(self.work.glob("*.eml")):
            token = p.name[:-4]
            if (self.work / f"{token}.commit").exists():
                self._finish(token)
                self._cleanup(token)
                continue
            name = (token.split("--", 1)[1] if "--" in token else token) + ".eml"
            self._process(token, name)
            redone += 1
        for p in self.work.glob("*.commit"):
            if not (self.work / f"{p.name[:-7]}.eml").exists():
                self._drop_marker(p.name[:-7])
        return redone


    def run_pass(self) -> list[str]:
        """Take every ready file (blocking); returns the summaries."""
        out = []
        for name in self.ready():
            result = self.take(name)
            if result:
                out.append(result)
        return out

    async def run_pass_async(self, run_blocking, parallel: int = 4) -> list[str]:
        """Take ready files, several at once (fsync latency overlaps)."""
        names = await run_blocking(self.ready)
        sem = asyncio.Semaphore(parallel)

        async def one(name):
            async with sem:
                return await run_blocking(self.take, name)
        results = await asyncio.gather(*(one(n) for n in names))
        return [r for r in results if r]


def _read_plain_file(path: Path, st: os.stat_result) -> bytes:
    """The bytes of a regular file with one link only. A symbolic link or device could
    point anywhere, and a hard link could be a second name of a file its dropper may not
    read (the worker reads as root): neither is ever mailed. The open does not follow a
    link, and the file opened must be the one looked at (nothing swapped in between)."""
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput("not a regular file (symbolic links and devices are refused)")
    if st.st_nlink != 1:
        raise InvalidInput(f"the file has {st.st_nlink} hard links; only a file with one "
                           f"name is taken (copy it into pickup/ instead of linking it)")
    if st.st_size > MAX_FILE:
        raise InvalidInput(f"file of {st.st_size} bytes is larger than 1 GiB")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        opened = os.fstat(fd)
        if ((opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(opened.st_mode)
                or opened.st_nlink != 1):
            raise InvalidInput("the file was replaced or linked while being taken")
        return f.read(MAX_FILE + 1)


def pending_queue_ids(root) -> set[str]:
    """Queue ids that pickup markers may still commit (the queue sweep must keep their bodies)."""
    out = set()
    for p in (root.pickup_dir / ".work").glob("*.commit"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            q = json.loads(p.read_text("utf-8")).get("queue")
            if q:
                out.add(q["id"])
    return out


def _watch(path: Path, loop: asyncio.AbstractEventLoop, wake: asyncio.Event):
    """Start a watchdog observer that sets wake on any change; None if unavailable."""
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        return None

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event):
            loop.call_soon_threadsafe(wake.set)

    try:
        obs = Observer()
        obs.schedule(Handler(), str(path), recursive=False)
        obs.daemon = True
        obs.start()
        return obs
    except (OSError, RuntimeError) as e:
        log.warning("pickup: file events unavailable (%s); polling instead", e)
        return None


async def run(runtime) -> None:
    """The 'pickup' worker: take files until runtime.stopping is set."""
    from .outbound import wakeup
    pickup = Pickup(runtime.root, lambda: runtime.settings, lambda: runtime.directory, pipeline=runtime.pipeline)
    await runtime.run_blocking(pickup.recover)
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    observer = _watch(pickup.dir, loop, wake) if runtime.settings.pickup.use_events else None
    try:
        while not runtime.stopping.is_set():
            results = await pickup.run_pass_async(runtime.run_blocking)
            if any("queued" in r for r in results):
                wakeup.wake_local()
            settle = float(runtime.settings.pickup.settle_seconds)
            # files seen but not yet stable need another look after the settle time
            wait = float(runtime.settings.pickup.poll_seconds)
            if pickup.seen:
                wait = min(wait, max(0.1, settle / 2))
            wake.clear()
            waiters = [asyncio.create_task(wake.wait()), asyncio.create_task(runtime.stopping.wait())]
            await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
    finally:
        if observer is not None:
            observer.stop()
            await runtime.run_blocking(observer.join, 5)
