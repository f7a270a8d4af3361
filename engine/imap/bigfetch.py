"""FETCH of a whole large message (BODY[], BODY.PEEK[], RFC822, or a partial BODY[]<n.m>
as clients fetch big messages in slices) sent in pieces from the file, so a 60 MB message
costs a bounded buffer instead of copies in memory.

cmd_FETCH puts a Streamed in place of such a message's response line; send_all() writes
the lines, streaming those.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import memtrim
from ..errors import NotFound
from ..msgstream import CrlfReader
from . import fetch as fetchmod

STREAM_FROM = 1024 * 1024          # a message this large (as stored) is sent in pieces


@dataclass
class Streamed:
    head: bytes                    # b"* 3 FETCH (UID 7 FLAGS (\\Seen) BODY[] "
    folder: object
    msg: object
    partial: tuple[int, int] | None = None     # (start, count) of the CRLF bytes


def whole_item(items: list[fetchmod.FetchItem]) -> fetchmod.FetchItem | None:
    """The one item needing content, when it asks for the whole message."""
    content = [i for i in items if i.needs_content]
    if len(content) != 1:
        return None
    item = content[0]
    if item.name == "RFC822" or (item.kind == "BODY" and not item.numbers and not item.text):
        return item
    return None


def streamed(view, items, whole: fetchmod.FetchItem, flags_text: str | None, folder, msg) -> Streamed:
    others = [i for i in items if i is not whole]
    rendered = fetchmod.render(view, others, None, flags_text)       # b"(UID 7 FLAGS ())"
    label = "RFC822" if whole.name == "RFC822" else whole.label
    if whole.partial is not None:
        label += f"<{whole.partial[0]}>"
    head = b"* %d FETCH " % view.seq + rendered[:-1] + (b" " if others else b"") + label.encode() + b" "
    return Streamed(head, folder, msg, whole.partial)


async def send_all(session, lines: list) -> bool:
    """Write the lines, streaming the Streamed ones; False when a streamed message had been
    expunged meanwhile (its item is then NIL, as in fetch.render_vanished)."""
    run = session.runtime.run_blocking
    pending: list[bytes] = []
    complete = True
    for line in lines:
        if not isinstance(line, Streamed):
            pending.append(line)
            continue
        if pending:
            await session.send(b"".join(pending))
            pending = []
        try:
            reader = CrlfReader(await run(line.folder.open, line.msg))
        except NotFound:
            await session.send(line.head + b"NIL)\r\n")
            complete = False
            continue
        try:
            total = await run(reader.crlf_size)
            memtrim.note(total)
            skip, size = 0, total
            if line.partial is not None:
                skip = min(line.partial[0], total)
                size = min(line.partial[1], total - skip)
            await session.send(line.head + b"{%d}\r\n" % size)
            sent = 0
            while sent < size:
                piece = await run(reader.next_piece)
                if not piece:     # a file cut short meanwhile (never by a Maildir writer): fill up
                    piece = b" " * (size - sent)
                elif skip:        # a partial fetch: the bytes before its start
                    taken = min(skip, len(piece))
                    piece, skip = piece[taken:], skip - taken
                    if not piece:
                        continue
                piece = piece[:size - sent]
                if b"\0" in piece:   # never a NUL in a {n} literal: 0x80, as response.literal sends it
                    piece = piece.replace(b"\0", b"\x80")
                await session.send(piece)
                sent += len(piece)
        finally:
            reader.close()
        await session.send(b")\r\n")
    if pending:
        await session.send(b"".join(pending))
    return complete
