"""THREAD (RFC 5256 §2.2): ORDEREDSUBJECT and REFERENCES over the messages a search
matched, and the `* THREAD` list they give.

A message is a ThreadMsg: its number (sequence number or UID, what the reply names),
its UID, its Message-ID, its references (References, else the first In-Reply-To id),
its Subject field's value and its sort date (the Date field in UTC, else INTERNALDATE).
Where RFC 5256 leaves a choice, the choices are Dovecot's, so a client sees the same
threads from either server: a duplicate Message-ID makes the later message a thread
of its own, a message's own parent comes from its last reference (a link that would
make a loop is left out), a dummy inside a thread gives its children to the nearest
real ancestor, and siblings are ordered by (sort date, UID).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .basesubject import base_subject

# A msg-id as Dovecot's message_id_get_next finds one: "<" local "@" domain ">"
_MSGID = re.compile(rb"<[ \t\r\n]*([^<>@\s]+@[^<>@\s]+?)[ \t\r\n]*>")


def message_ids(value: bytes | None) -> list[bytes]:
    """The msg-ids in a Message-ID, In-Reply-To or References value, in order."""
    return _MSGID.findall(value) if value else []


@dataclass(slots=True)
class ThreadMsg:
    number: int
    uid: int
    msgid: bytes | None
    refs: list[bytes]
    subject: bytes | None
    date: float


@dataclass(eq=False, slots=True)
class _Node:
    msg: ThreadMsg | None = None        # None: a dummy (a message referenced, not here)
    parent: _Node | None = None
    children: list = field(default_factory=list)
    # while gathering subjects (RFC 5256 step 5)
    reply: bool = False
    up: _Node | None = None             # the root this one is merged into
    ignore: bool = False
    # an ancestor found before (valid while no link was broken since: _Links.broken)
    seen_above: _Node | None = None
    seen_at: int = -1

    def key(self) -> tuple:
        if self.msg is not None:
            return self.msg.date, self.msg.uid
        first = min(self.children, key=_Node.key)
        return first.key()


def references(msgs: list[ThreadMsg]) -> list[_Node]:
    """The roots of the REFERENCES threads, in order, children in order."""
    table: dict[bytes, _Node] = {}
    nodes: list[_Node] = []
    links = _Links()

    def node_for(msgid: bytes) -> _Node:
        n = table.get(msgid)
        if n is None:
            n = table[msgid] = _Node()
            nodes.append(n)
        return n

    for m in sorted(msgs, key=lambda m: m.uid):
        own = table.get(m.msgid) if m.msgid is not None else None
        if own is None or own.msg is not None:       # new, or a duplicate Message-ID
            own = _Node()
            nodes.append(own)
            if m.msgid is not None and m.msgid not in table:
                table[m.msgid] = own
        own.msg = m
        parent = None
        for ref in m.refs:
            child = node_for(ref)
            if parent is not None:
                links.link(parent, child)
            parent = child
        if own.parent is not None and own.parent is not parent:
            own.parent = None                          # the last reference decides
            links.broken += 1
        if parent is not None:
            links.link(parent, own)
    # (2)-(3): roots; a dummy's children go to the nearest real ancestor
    roots = []
    for n in nodes:
        if n.parent is None:
            roots.append(n)
            continue
        if n.msg is None:
            continue
        up = n.parent
        while up.msg is None and up.parent is not None:
            up = up.parent
        up.children.append(n)
    roots = _promoted(roots)
    # (5) gather roots with the same base subject
    subjects: dict[str, _Node] = {}
    for r in roots:
        src = r.msg if r.msg is not None else min(r.children, key=_Node.key).msg
        if src.subject is None:
            continue
        base, reply = base_subject(src.subject)
        r.reply = reply
        if not base:
            continue
        held = subjects.get(base)
        if held is None:
            subjects[base] = r
        elif held.msg is not None and (r.msg is None or (held.reply and not reply)):
            held.up = r
            subjects[base] = r
        else:
            r.up = held
    if any(r.up is not None for r in roots):
        merged = list(roots)
        for r in list(merged):
            if r.up is None or r.ignore:
                continue
            top = r.up
            while top.up is not None:
                top = top.up
            if r.msg is None:                          # both dummies: children joined
                top.children.extend(r.children)
                r.children = []
                r.ignore = True
            elif top.msg is None or (r.reply and not top.reply):
                top.children.append(r)
                r.ignore = True
            else:
                dummy = _Node(children=[top, r])
                top.up = dummy
                top.ignore = r.ignore = True
                merged.append(dummy)
        roots = _promoted([r for r in merged if not r.ignore])
    return roots


class _Links:
    """Parent links made without loops. Whether a link would make one is a question of
    the parent's root, found through ancestors remembered on the way up: a long reply
    chain costs one walk, not one per message. Breaking a link (rare) forgets them."""

    def __init__(self):
        self.broken = 0

    def link(self, parent: _Node, child: _Node) -> None:
        """parent becomes child's parent unless child has one or it makes a loop."""
        if child.parent is not None:      # kept: the first parent given wins
            return
        if self.root(parent) is child:    # child is parent's ancestor (or parent itself)
            return
        child.parent = parent

    def root(self, node: _Node) -> _Node:
        path = []
        while node.parent is not None:
            path.append(node)
            above = node.seen_above
            node = above if above is not None and node.seen_at == self.broken else node.parent
        for n in path:
            n.seen_above, n.seen_at = node, self.broken
        return node


def _promoted(roots: list[_Node]) -> list[_Node]:
    """Roots sorted, a dummy with one child replaced by it, one with none dropped."""
    out = []
    for r in roots:
        if r.msg is None:
            if not r.children:
                continue
            if len(r.children) == 1:
                r = r.children[0]
        out.append(r)
    out.sort(key=_Node.key)
    return out


def ordered_subject(msgs: list[ThreadMsg]) -> list[_Node]:
    """ORDEREDSUBJECT: messages grouped by base subject, each group one thread whose
    first message (by date) is the parent of the others; threads by their first date."""
    groups: dict[str, _Node] = {}
    for m in sorted(msgs, key=lambda m: (m.date, m.number)):
        base = base_subject(m.subject)[0]
        node = _Node(msg=m)
        head = groups.get(base)
        if head is None:
            groups[base] = node
        else:
            head.children.append(node)
    return sorted(groups.values(), key=lambda n: (n.msg.date, n.msg.number))


def encode(roots: list[_Node]) -> str:
    """The thread-list of a `* THREAD` reply: "(1 2 (3)(4 5))(6)". Without recursion:
    a hostile mailbox may hold threads thousands of levels deep."""
    out: list[str] = []
    todo: list = []
    for r in reversed(roots):
        todo += [")", r, "("]
    while todo:
        item = todo.pop()
        if type(item) is str:
            out.append(item)
            continue
        node = item
        while True:
            if node.msg is not None:
                if out and out[-1] != "(":
                    out.append(" ")
                out.append(str(node.msg.number))
            kids = sorted(node.children, key=_Node.key) if len(node.children) > 1 else node.children
            if len(kids) == 1 and node.msg is not None:
                node = kids[0]
                continue
            if kids:
                if node.msg is not None:
                    out.append(" ")
                for k in reversed(kids):
                    todo += [")", k, "("]
            break
    return "".join(out)
