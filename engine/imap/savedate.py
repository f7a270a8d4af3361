"""SAVEDATE (RFC 8514): when a message was saved into the folder it is in now.

A Maildir keeps no save date, but every writer names a new file after the time it
writes it: "<seconds>.<unique>.<host>" (maildir(5); Dovecot, Postfix, procmail, mutt and
our own store.unique_base). APPEND, delivery, COPY and MOVE (a copy under a new name,
then an expunge) all make a new name in the destination, so the name's seconds are the
save date. It is read from the name, not the file: a flag change renames the file, which
sets its ctime (what Dovecot falls back to when its index has no save date), and the
mtime is the INTERNALDATE, which APPEND may set to any date. A name is also kept by
backups and restores, where times of files are not (`mailctl import` stores messages
under new names: their save date is the import's). A file named without a leading
time (put there by hand) has no known save date: FETCH says NIL and the SAVED* search
keys compare its INTERNALDATE instead, as RFC 8514 §4.2 wants for an unknown save date.
"""
from __future__ import annotations

import datetime as dt

LAST = 2 ** 32          # as INTERNALDATE: what a 32-bit unsigned time holds (2106)


def of(base: str) -> int | None:
    """The save date (epoch seconds) a message file's base name gives, or None."""
    secs = base.partition(".")[0]
    if not (0 < len(secs) <= 10 and secs.isascii() and secs.isdigit()):
        return None
    value = int(secs)
    return value if 0 < value < LAST else None


def day(view) -> dt.date:
    """The UTC day SAVEDBEFORE/SAVEDON/SAVEDSINCE compare (as BEFORE/ON/SINCE do the
    INTERNALDATE's): the save date's, else the INTERNALDATE's."""
    saved = of(view.msg.base)
    stamp = saved if saved is not None else view.internaldate
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).date()
