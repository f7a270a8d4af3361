"""Logging for the server: stderr (foreground) and log/mailctl.log.

Records go through a queue to one writer thread, so a slow disk never blocks the event
loop. The writer takes everything queued within GATHER_SECONDS of the first line and
writes it with one write() per destination, so a burst of transactions costs a few
wakeups and writes, not one per line (each wakeup is a GIL handoff the event loop pays
for).

Every serving process of a root appends to the same mailctl.log (O_APPEND: whole writes
never interleave). Only the supervisor rotates it by size; the others notice the new file
and reopen it.

A log that cannot be written (a full or read-only disk) never stops mail: the lines wait
in memory (up to MAX_PENDING bytes; past that, new ones are counted and dropped) and are
written, in order, once the disk takes them again, retried every second meanwhile. A
batch is written only when the disk has room for all of it, so no line is torn.
"""
from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time

from .root import Root

FORMAT = "%(asctime)s %(levelname)s %(message)s"
LOG_NAME = "mailctl.log"
MAX_BYTES = 20 * 1024 * 1024
BACKUPS = 5
MAX_PENDING = 4 * 1024 * 1024      # log bytes kept in memory while the file takes no writes
RETRY_SECONDS = 1.0
GATHER_SECONDS = 0.02           # a line reaches the file at most this much later
_writer: "LogWriter | None" = None
_CHECK_SIZE = object()       # queued instead of a record: rotate if the file grew too big


class _LineFormatter(logging.Formatter):
    """FORMAT, with the date and time of a second formatted once for all its records
    (strftime per record was a third of the writer's time under load)."""

    def __init__(self):
        super().__init__(FORMAT)
        self._second: int | None = None
        self._stamp = ""

    def formatTime(self, record, datefmt=None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return self.default_msec_format % (self._stamp, record.msecs)


class _Handoff(logging.handlers.QueueHandler):
    """The queue to the writer thread. A record without exception or stack is handed over
    as it is, its message made text here (its arguments may change once we return):
    QueueHandler's copy of every record is for queues shared with other handlers."""

    def prepare(self, record):
        if record.exc_info or record.exc_text or record.stack_info:
            return super().prepare(record)
        record.msg = record.message = record.getMessage()
        record.args = None
        return record


class LogWriter(threading.Thread):
    def __init__(self, records: queue.SimpleQueue, path, stderr: bool, rotate: bool, owner=None):
        super().__init__(name="mailctl-log", daemon=True)
        self.records = records
        self.path = str(path)
        self.stderr = stderr
        self.rotate = rotate
        self.owner = owner          # the serving processes' account, when the supervisor runs as root
        self.formatter = _LineFormatter()
        self.fd = -1
        self.pending = bytearray()          # formatted lines not yet in the file
        self.dropped = 0                    # lines given up while the file took no writes
        self.failing = False
        try:
            self._open()
        except OSError:
            self.fd = -1                    # opened at the first line the disk takes

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if self.owner is not None:  # a file the supervisor creates must stay writable by them
            os.fchown(self.fd, self.owner.uid, self.owner.gid)

    def _reopen(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._open()

    def run(self) -> None:
        while True:
            try:
                batch = [self.records.get(timeout=RETRY_SECONDS if self.pending else None)]
            except queue.Empty:
                self._flush()               # lines waiting for room: try again
                continue
            # Let the lines of the next moments join this batch: while this thread sleeps
            # rather than waits on the queue, putting a record wakes nobody (no system call
            # and no GIL handoff in the event loop's thread for each line).
            time.sleep(GATHER_SECONDS)
            with_stop = False
            while True:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            if None in batch:
                with_stop = True
                batch = [r for r in batch if r is not None]
            if _CHECK_SIZE in batch:
                batch = [r for r in batch if r is not _CHECK_SIZE]
                self._check_size()
            if batch:
                self._write(batch)
            if with_stop:
                if self.fd >= 0:
                    os.close(self.fd)
                return

    def _write(self, batch: list[logging.LogRecord]) -> None:
        lines = []
        for record in batch:
            try:
                lines.append(self.formatter.format(record) + "\n")
            except Exception:           # noqa: BLE001 - a bad record must not stop logging
                lines.append(f"{record.levelname} (unprintable log record: {record.msg!r})\n")
        text = "".join(lines)
        if len(self.pending) < MAX_PENDING:
            self.pending += text.encode("utf-8", "replace")
        else:
            self.dropped += len(lines)
        self._flush()
        if self.stderr:
            try:
                sys.stderr.write(text)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    def _check_size(self) -> None:
        try:
            self._follow_file(0)
        except OSError as e:
            print(f"mailctl: cannot rotate {self.path}: {e.strerror}", file=sys.stderr)

    def _flush(self) -> None:
        """Write what is pending; what the disk does not take stays pending, in order (a
        short write leaves the rest of its line, so no line is torn)."""
        try:
            self._follow_file(len(self.pending))
            self._check_room()
            while self.pending:
                del self.pending[:os.write(self.fd, self.pending)]
        except OSError as e:
            if not self.failing:
                print(f"mailctl: cannot write {self.path}: {e.strerror}; log lines wait until it can",
                      file=sys.stderr)
            self.failing = True
            return
        if self.failing:
            self.failing = False
            if self.dropped:
                lost = f"{time.strftime('%Y-%m-%d %H:%M:%S')} WARNING log: {self.dropped} line(s) lost " \
                       f"while this file could not be written\n"
                self.dropped = 0
                self.pending += lost.encode()
                self._flush()

    def _check_room(self) -> None:
        """Refuse a write the disk cannot take whole: a short write would leave half a line
        for another serving process to append its own lines to."""
        st = os.fstatvfs(self.fd)
        free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
        if free < len(self.pending):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _follow_file(self, incoming: int) -> None:
        """The supervisor rotates by size; every process reopens a file that was rotated away
        (or that it could not open before)."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            on_disk = None
        mine = os.fstat(self.fd) if self.fd >= 0 else None
        if mine is None or on_disk is None or (on_disk.st_ino, on_disk.st_dev) != (mine.st_ino, mine.st_dev):
            self._reopen()
            mine = os.fstat(self.fd)
        if self.rotate and mine.st_size and mine.st_size + incoming > MAX_BYTES:
            for i in range(BACKUPS - 1, 0, -1):
                if os.path.exists(f"{self.path}.{i}"):
                    os.replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
            os.replace(self.path, f"{self.path}.1")
            self._reopen()


def setup(root: Root, level: str = "info", stderr: bool = True, rotate: bool = True, owner=None) -> None:
    """Send the 'mailctl' logger to log/mailctl.log (and stderr). rotate: this process is
    the one that rotates the file (the supervisor); owner: the account the file belongs to."""
    global _writer
    stop()
    root.log_dir.mkdir(parents=True, exist_ok=True)
    records: queue.SimpleQueue = queue.SimpleQueue()
    logger = logging.getLogger("mailctl")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.addHandler(_Handoff(records))
    logger.setLevel(level.upper())
    logger.propagate = False
    # FORMAT uses none of these; each costs a call (getpid is a system call) per record
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    # ... nor the caller's file and line: finding them walks the stack for every record
    # (the logging HOWTO's "Optimization")
    logging._srcfile = None
    quiet_libraries()
    _writer = LogWriter(records, root.log_dir / LOG_NAME, stderr, rotate, owner)
    _writer.start()


def check_size() -> None:
    """Rotate the file now if it is over MAX_BYTES: the supervisor, which rotates it,
    writes little itself while its serving processes fill it."""
    if _writer is not None and _writer.rotate:
        _writer.records.put(_CHECK_SIZE)


def quiet_libraries() -> None:
    # aiosmtpd logs every command line at INFO, AUTH PLAIN credentials included: never let it.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("mail.debug").setLevel(logging.ERROR)
    logging.getLogger("watchdog").setLevel(logging.CRITICAL)   # noise from its threads at stop


def set_level(level: str) -> None:
    logging.getLogger("mailctl").setLevel(level.upper())


def stop() -> None:
    """Write what is queued and stop the writer."""
    global _writer
    if _writer is not None:
        _writer.records.put(None)
        _writer.join(10)
        logger = logging.getLogger("mailctl")
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logger.propagate = True             # as before setup(): records go to the root logger
        _writer = None
