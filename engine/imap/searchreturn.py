"""What SEARCH and SORT return: the RETURN options of ESEARCH (RFC 4731), ESORT and
PARTIAL (RFC 5267) and SAVE (SEARCHRES, RFC 5182), and the `* ESEARCH` line.

A search's result is a list of numbers (sequence numbers or UIDs): ascending for
SEARCH, in sort order for SORT.
"""
from __future__ import annotations

from dataclasses import dataclass

from .parser import Atom, ParseError

MAX_PARTIAL = 2 ** 32 - 1


@dataclass
class ReturnOptions:
    min: bool = False
    max: bool = False
    all: bool = False
    count: bool = False
    save: bool = False
    partial: tuple[int, int] | None = None   # (first, last), 1-based, first may be > last: from the end

    @property
    def reports(self) -> bool:
        """Whether an ESEARCH line is sent (SAVE alone sends none, RFC 5182 §2.4)."""
        return self.min or self.max or self.all or self.count or self.partial is not None


def parse_return(token) -> ReturnOptions:
    """The list after RETURN -> ReturnOptions. An empty list means ALL (RFC 4731 §3.1)."""
    if not isinstance(token, list):
        raise ParseError("RETURN needs a parenthesised list of options")
    opts = ReturnOptions()
    if not token:
        opts.all = True
        return opts
    items = iter(token)
    for t in items:
        if not isinstance(t, Atom):
            raise ParseError("a RETURN option must be an atom")
        word = t.upper()
        if word in ("MIN", "MAX", "ALL", "COUNT", "SAVE"):
            setattr(opts, word.lower(), True)
        elif word == "PARTIAL":
            opts.partial = _partial_range(next(items, None))
        else:
            raise ParseError(f"unknown RETURN option {str(t)[:30]}")
    return opts


def _partial_range(token) -> tuple[int, int]:
    """PARTIAL's range (RFC 5267 §4.4): "first:last" of the result, 1-based."""
    text = str(token) if isinstance(token, Atom) else ""
    a, sep, b = text.partition(":")
    if not (sep and a.isdigit() and b.isdigit() and len(a) <= 10 and len(b) <= 10):
        raise ParseError("PARTIAL needs a range like 1:100")
    first, last = int(a), int(b)
    if not (0 < first <= MAX_PARTIAL and 0 < last <= MAX_PARTIAL):
        raise ParseError("PARTIAL range out of bounds")
    return (first, last) if first <= last else (last, first)


def saved_numbers(opts: ReturnOptions, numbers: list[int], ordered: bool = False) -> list[int]:
    """What SAVE keeps: MIN and/or MAX alone keep just those (RFC 5182 §2.4)."""
    if not numbers:
        return []
    if (opts.min or opts.max) and not (opts.all or opts.count or opts.partial):
        first, last = (numbers[0], numbers[-1]) if ordered else (min(numbers), max(numbers))
        return sorted(set(([first] if opts.min else []) + ([last] if opts.max else [])))
    return numbers


def esearch_line(tag: str, uid: bool, opts: ReturnOptions, numbers: list[int], ordered: bool = False,
                 modseq: int = 0) -> bytes:
    """The `* ESEARCH` reply. ordered: numbers are in sort order (ESORT), so ALL keeps
    that order and MIN/MAX are the first and the last in it (RFC 5267 §3.2). modseq: a
    search with a MODSEQ key found messages, their highest mod-sequence (RFC 7162 §3.1.5)."""
    out = [f'* ESEARCH (TAG "{tag}")']
    if uid:
        out.append(" UID")
    if numbers:
        if opts.min:
            out.append(f" MIN {numbers[0] if ordered else min(numbers)}")
        if opts.max:
            out.append(f" MAX {numbers[-1] if ordered else max(numbers)}")
        if opts.all:
            out.append(" ALL " + (sequence_list(numbers) if ordered else sequence_set(numbers)))
    if opts.partial is not None:
        first, last = opts.partial
        part = numbers[first - 1:last]
        out.append(f" PARTIAL ({first}:{last} " +
                   ((sequence_list(part) if ordered else sequence_set(part)) if part else "NIL") + ")")
    if opts.count:
        out.append(f" COUNT {len(numbers)}")
    if modseq and numbers:
        out.append(f" MODSEQ {modseq}")
    out.append("\r\n")
    return "".join(out).encode()


def sequence_set(numbers: list[int]) -> str:
    """Ascending numbers as a compact sequence set: 1:3,5,7:8."""
    out = []
    start = prev = None
    for n in sorted(numbers):
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            out.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = n
    if start is not None:
        out.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(out)


def sequence_list(numbers: list[int]) -> str:
    """Numbers in their given order; runs that go up by one as ranges (1:3,9,5)."""
    out = []
    i = 0
    n = len(numbers)
    while i < n:
        j = i
        while j + 1 < n and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(f"{numbers[i]}:{numbers[j]}" if j > i else str(numbers[i]))
        i = j + 1
    return ",".join(out)
