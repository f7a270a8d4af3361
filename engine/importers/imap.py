"""Copy every folder of a live IMAP server into an account, like imapsync: flags and
internal dates kept, folders mapped (--folder-map OLD=NEW), each message once.

Keys are computed from Message-ID, Date and RFC822.SIZE fetched with the headers, so
a second run downloads nothing it already has."""
from __future__ import annotations

import imaplib
import re
import ssl
import time
from dataclasses import dataclass

from ..errors import InvalidInput, MailError
from .common import ImportCounts, Importer, header_key, header_value, message_key

_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"(?P<sep>[^"]*)"|NIL) (?P<name>.*)$')
_FETCH_ITEM = re.compile(rb"(UID|RFC822\.SIZE) (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE \"([^\"]+)\"")
BATCH = 200
TIMEOUT = 60


@dataclass
class ImapSource:
    host: str
    port: int | None = None
    security: str = "none"          # none | tls | starttls
    user: str = ""
    password: str = ""
    verify_tls: bool = True


def connect(src: ImapSource) -> imaplib.IMAP4:
    ctx = ssl.create_default_context()
    if not src.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        if src.security == "tls":
            conn = imaplib.IMAP4_SSL(src.host, src.port or 993, ssl_context=ctx, timeout=TIMEOUT)
        else:
            conn = imaplib.IMAP4(src.host, src.port or 143, timeout=TIMEOUT)
            if src.security == "starttls":
                conn.starttls(ssl_context=ctx)
        conn.login(src.user, src.password)
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as e:
        raise MailError(f"{src.host}:{src.port}: cannot log in as {src.user}: {e}") from None
    return conn


def _decode_name(raw: bytes) -> str:
    raw = raw.strip()
    if raw.startswith(b'"') and raw.endswith(b'"'):
        raw = raw[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    from .. import mutf7
    text = raw.decode("ascii", "replace")
    try:
        return mutf7.decode(text)
    except Exception:
        return text


def list_folders(conn: imaplib.IMAP4) -> list[tuple[str, str, str]]:
    """(raw name to SELECT, decoded name, separator) of selectable folders."""
    typ, data = conn.list()
    if typ != "OK":
        raise MailError(f"LIST failed: {data}")
    out = []
    items = list(data)
    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, tuple):          # a literal name
            head, literal = item
            m = _LIST.match(head.rsplit(b" ", 1)[0] + b" x")
            flags, sep, raw = (m.group("flags") if m else b""), (m.group("sep") if m else b"/"), literal
        else:
            m = _LIST.match(item or b"")
            if not m:
                i += 1
                continue
            flags, sep, raw = m.group("flags"), m.group("sep") or b"/", m.group("name")
        i += 1
        if b"\\noselect" in flags.lower() or b"\\nonexistent" in flags.lower():
            continue
        quoted = raw.strip()
        sel = quoted.decode("ascii", "replace")
        if not sel.startswith('"'):
            sel = '"' + sel.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append((sel, _decode_name(raw), (sep or b"/").decode()))
    return out


def _parse_fetch(data) -> list[dict]:
    """UID FETCH responses -> [{uid, size, flags, date, header?/body?}]."""
    out = []
    for item in data:
        if isinstance(item, tuple):
            meta, literal = item
        elif isinstance(item, bytes) and b"UID" in item:
            meta, literal = item, None
        else:
            continue
        rec = {"literal": literal}
        for m in _FETCH_ITEM.finditer(meta):
            if m.group(1) == b"UID":
                rec["uid"] = int(m.group(2))
            elif m.group(1) == b"RFC822.SIZE":
                rec["size"] = int(m.group(2))
            elif m.group(3) is not None:
                rec["flags"] = m.group(3).decode("ascii", "replace").split()
            elif m.group(4):
                rec["date"] = m.group(4).decode()
        if "uid" in rec:
            out.append(rec)
    return out


def _internaldate(text: str | None) -> float | None:
    if not text:
        return None
    t = imaplib.Internaldate2tuple(f'INTERNALDATE "{text}"'.encode())
    return time.mktime(t) if t else None


def import_imap(importer: Importer, src: ImapSource, folder_map: dict[str, str] | None = None) -> ImportCounts:
    folder_map = folder_map or {}
    conn = connect(src)
    try:
        try:
            folders = list_folders(conn)
        except (imaplib.IMAP4.error, OSError) as e:
            raise MailError(f"{src.host}: cannot list folders: {e}") from None
        importer.progress.start(f"importing from {src.host}", None)
        for sel, name, sep in folders:
            target = folder_map.get(name, name)
            if sep and sep != "/":
                target = target.replace(sep, "/") if name not in folder_map else target
            if target.upper() == "INBOX":
                target = "INBOX"
            try:
                _copy_folder(conn, importer, sel, name, target)
            except (imaplib.IMAP4.error, OSError, ssl.SSLError) as e:
                # what was imported stays imported; a rerun continues from there
                raise MailError(f"{src.host}: folder {name!r}: {e.__class__.__name__}: {e}; "
                                f"run the import again to continue") from None
    finally:
        try:
            conn.logout()
        except Exception:
            pass
    return importer.counts


def _copy_folder(conn: imaplib.IMAP4, importer: Importer, sel: str, name: str, target: str) -> None:
    typ, data = conn.select(sel, readonly=True)
    if typ != "OK":
        importer.counts.failed += 1
        importer.counts.problems.append(f"{name}: cannot select: {data}")
        return
    if int(data[0] or 0) == 0:
        importer.ensure_folder(target)
        return
    typ, data = conn.uid("FETCH", "1:*", "(UID RFC822.SIZE FLAGS INTERNALDATE "
                                         "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)])")
    if typ != "OK":
        raise MailError(f"{name}: FETCH failed: {data}")
    wanted = []
    for rec in _parse_fetch(data):
        head = (rec.get("literal") or b"").replace(b"\r\n", b"\n")
        key = header_key(target, header_value(head, b"message-id"), header_value(head, b"date"), rec.get("size", 0))
        if importer.seen(key):
            importer.counts.skipped += 1
            importer.progress.advance(1)
            continue
        wanted.append((rec, key))
    for start in range(0, len(wanted), BATCH):
        batch = wanted[start:start + BATCH]
        uids = ",".join(str(r["uid"]) for r, _ in batch)
        typ, data = conn.uid("FETCH", uids, "(UID BODY.PEEK[])")
        if typ != "OK":
            raise MailError(f"{name}: FETCH failed: {data}")
        bodies = {r["uid"]: r["literal"] for r in _parse_fetch(data)}
        for rec, key in batch:
            body = bodies.get(rec["uid"])
            if body is None:
                importer.counts.failed += 1
                importer.counts.problems.append(f"{name}: UID {rec['uid']} vanished during the import")
                continue
            flags = [f for f in rec.get("flags", []) if f.lower() != "\\recent"]
            importer.add(target, body, flags, _internaldate(rec.get("date")), key=key or message_key(target, body),
                         where=f"{name} UID {rec['uid']}")


def parse_folder_map(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise InvalidInput(f"--folder-map {item!r}: use OLD=NEW, for example 'Sent Items=Sent'")
        out[old] = new
    return out
