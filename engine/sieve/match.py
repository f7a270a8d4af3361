"""Match types and comparators (RFC 5228 §2.7, RFC 5231 relational, RFC 4790 numeric,
draft regex): one function answers "does this value match that key"."""
from __future__ import annotations

import re

from .lexer import SieveError

try:
    import regex as _regex_module      # a search with a timeout (mrab-regex, Debian python3-regex)
except ImportError:                    # pragma: no cover - then the nested-quantifier check alone
    _regex_module = None

MAX_REGEX = 1024           # characters of a :regex key


class Budget:
    """CPU steps a script may spend on one message: every test, command and string
    compared costs one; a wildcard costs its length."""

    def __init__(self, steps: int):
        self.left = steps

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise SieveError(0, "script used too much CPU (step limit)")


def _fold(s: str, comparator: str) -> str:
    return s.lower() if comparator == "i;ascii-casemap" else s


def _numeric(s: str):
    m = re.match(r"[0-9]+", s)
    return int(m.group()) if m else None     # None: "positive infinity" (RFC 4790 §9.1.1)


def _relate(a, b, rel: str) -> bool:
    return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b, "eq": a == b, "ne": a != b}[rel]


def _order(value: str, key: str, comparator: str):
    if comparator == "i;ascii-numeric":
        a, b = _numeric(value), _numeric(key)
        inf = float("inf")
        return (inf if a is None else a), (inf if b is None else b)
    return _fold(value, comparator), _fold(key, comparator)


def wildcard(value: str, key: str, comparator: str, budget: Budget) -> list[str] | None:
    """:matches with '*' and '?' ('\\' quotes one), in O(len(value) * len(key)) whatever
    the key: the parts between stars are placed at their earliest position (which is
    right for star patterns, and gives the shortest '*' matches RFC 5229 asks for), never
    by backtracking. Returns the match variables (${0} the value, then each wildcard)."""
    budget.spend(1 + (len(value) * (len(key) + 1)) // 64)
    v = _fold(value, comparator)
    segments: list[list[str | None]] = [[]]          # None: '?'; a string: that character
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key):
            segments[-1].append(_fold(key[i + 1], comparator))
            i += 2
            continue
        if c == "*":
            segments.append([])
        else:
            segments[-1].append(None if c == "?" else _fold(c, comparator))
        i += 1

    def at(seg, pos: int) -> bool:
        return pos + len(seg) <= len(v) and all(t is None or v[pos + j] == t for j, t in enumerate(seg))

    first, last = segments[0], segments[-1]
    if len(segments) == 1:
        if len(first) != len(v) or not at(first, 0):
            return None
        return [value] + [value[j] for j, t in enumerate(first) if t is None]
    if not at(first, 0):
        return None
    starts = [0]
    pos = len(first)
    tail = len(v) - len(last)
    if tail < pos or not at(last, tail):
        return None
    for seg in segments[1:-1]:
        while pos + len(seg) <= tail and not at(seg, pos):
            pos += 1
        if pos + len(seg) > tail:
            return None
        starts.append(pos)
        pos += len(seg)
    starts.append(tail)
    groups: list[str] = [value]
    for n, seg in enumerate(segments):
        if n > 0:          # the star before this part: from the end of the previous part
            groups.append(value[starts[n - 1] + len(segments[n - 1]):starts[n]])
        groups += [value[starts[n] + j] for j, t in enumerate(seg) if t is None]
    return groups


def matches(value: str, key: str, opts: dict, budget: Budget) -> list[str] | None:
    """None when it does not match; else the match variables (for :matches/:regex)."""
    budget.spend()
    comparator = opts.get("comparator", "i;ascii-casemap")
    if "value" in opts:
        a, b = _order(value, key, comparator)
        return [] if _relate(a, b, opts["value"].lower()) else None
    if "contains" in opts:
        if comparator == "i;ascii-numeric":
            raise SieveError(0, "i;ascii-numeric does not support :contains")
        return [] if _fold(key, comparator) in _fold(value, comparator) else None
    if "matches" in opts:
        if comparator == "i;ascii-numeric":
            raise SieveError(0, "i;ascii-numeric does not support :matches")
        return wildcard(value, key, comparator, budget)
    if "regex" in opts:
        return regex(value, key, comparator, budget)
    if comparator == "i;ascii-numeric":
        a, b = _numeric(value), _numeric(key)
        return [] if a == b else None
    return [] if _fold(value, comparator) == _fold(key, comparator) else None


_NESTED_QUANT = re.compile(r"\([^()]*[*+}][^()]*\)\s*[*+{]")
REGEX_SECONDS = 0.25      # one :regex search; the `regex` module stops a backtracking one


def regex(value: str, key: str, comparator: str, budget: Budget) -> list[str] | None:
    """POSIX extended regex, as Pigeonhole. Python's backtracking engines can take
    exponential time ((a|a)*b): with the `regex` module a search is stopped after
    REGEX_SECONDS (a runtime error: INBOX); and a pattern with a quantified group holding
    a quantifier ((a+)+) is refused before it runs, whichever engine."""
    if len(key) > MAX_REGEX:
        raise SieveError(0, "regex too long")
    if _NESTED_QUANT.search(key):
        raise SieveError(0, f"regex {key!r} refused: nested quantifiers")
    budget.spend(1 + len(value) // 256)
    engine = _regex_module or re
    flags = engine.DOTALL | (engine.IGNORECASE if comparator == "i;ascii-casemap" else 0)
    try:
        pat = engine.compile(key, flags)
    except (re.error, getattr(engine, "error", re.error), RecursionError, OverflowError) as e:
        raise SieveError(0, f"bad regex {key!r}: {e}") from None
    try:
        m = pat.search(value, timeout=REGEX_SECONDS) if _regex_module else pat.search(value)
    except TimeoutError:
        raise SieveError(0, f"regex {key!r} took too long") from None
    if m is None:
        return None
    return [m.group(0)] + [g or "" for g in m.groups()]


def count_matches(count: int, keys: list[str], opts: dict) -> bool:
    """:count: the number of values against each key, compared as i;ascii-numeric."""
    rel = opts["count"].lower()
    return any(_relate(count, _numeric(k) if _numeric(k) is not None else float("inf"), rel) for k in keys)
