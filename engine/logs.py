"""Logging for the server: stderr (foreground) and log/mailctl.log, written by a background
thread so a slow disk never blocks the event loop. Rotation by size."""
from __future__ import annotations

import logging
import logging.handlers
import queue
import sys

from .root import Root

FORMAT = "%(asctime)s %(levelname)s %(message)s"
_listener: logging.handlers.QueueListener | None = None


def setup(root: Root, level: str = "info", stderr: bool = True, name: str = "mailctl.log") -> None:
    global _listener
    stop()
    root.log_dir.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = []
    file_handler = logging.handlers.RotatingFileHandler(root.log_dir / name, maxBytes=20 * 1024 * 1024,
                                                        backupCount=5, encoding="utf-8")
    handlers.append(file_handler)
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(formatter)
    q: queue.SimpleQueue = queue.SimpleQueue()
    logger = logging.getLogger("mailctl")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.addHandler(logging.handlers.QueueHandler(q))
    logger.setLevel(level.upper())
    logger.propagate = False
    quiet_libraries()
    _listener = logging.handlers.QueueListener(q, *handlers, respect_handler_level=False)
    _listener.start()


def quiet_libraries() -> None:
    # aiosmtpd logs every command line at INFO, AUTH PLAIN credentials included: never let it.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("mail.debug").setLevel(logging.ERROR)
    logging.getLogger("watchdog").setLevel(logging.CRITICAL)   # noise from its threads at stop


def set_level(level: str) -> None:
    logging.getLogger("mailctl").setLevel(level.upper())


def stop() -> None:
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None
