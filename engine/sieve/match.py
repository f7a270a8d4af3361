"""Match types and comparators (RFC 5228 §2.7, RFC 5231 relational, RFC 4790 numeric,
draft regex): one function answers "does this value match that key"."""
from __future__ import annotations

import re

from .lexer import SieveError

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
    """:matches with '*' and '?' (and '\\' quoting), no backtracking blow-up: a DP over
    positions. Returns the match variables (${1}...) or None."""
    budget.spend(1 + (len(value) * len(key)) // 64)
    v, k = _fold(value, comparator), _fold(key, comparator)
    parts: list[str] = []
    i = 0
    while i < len(k):
        c = k[i]
        if c == "\\" and i + 1 < len(k):
            parts.append("\0" + k[i + 1])
            i += 2
            continue
        parts.append(c)
        i += 1
    pattern = "".join("(.*?)" if p == "*" else "(.)" if p == "?" else re.escape(p[-1]) for p in parts)
    # '*' and '?' only: re's backtracking on this is polynomial; budget paid above
    m = re.fullmatch(pattern, v, re.DOTALL)
    if m is None:
        return None
    groups = []
    pos = 0
    for g in range(1, len(m.groups()) + 1):
        groups.append(value[m.start(g):m.end(g)])
        pos = m.end(g)
    del pos
    return [value] + groups


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


def regex(value: str, key: str, comparator: str, budget: Budget) -> list[str] | None:
    """POSIX extended regex, as Pigeonhole. A pattern with a quantified group that itself
    holds a quantifier ((a+)+: catastrophic backtracking in Python's engine) is refused
    as a runtime error rather than run."""
    if len(key) > MAX_REGEX:
        raise SieveError(0, "regex too long")
    if _NESTED_QUANT.search(key):
        raise SieveError(0, f"regex {key!r} refused: nested quantifiers")
    budget.spend(1 + len(value) // 256)
    try:
        pat = re.compile(key, re.IGNORECASE | re.DOTALL if comparator == "i;ascii-casemap" else re.DOTALL)
    except re.error as e:
        raise SieveError(0, f"bad regex {key!r}: {e}") from None
    m = pat.search(value)
    if m is None:
        return None
    return [m.group(0)] + [g or "" for g in m.groups()]


def count_matches(count: int, keys: list[str], opts: dict) -> bool:
    """:count: the number of values against each key, compared as i;ascii-numeric."""
    rel = opts["count"].lower()
    return any(_relate(count, _numeric(k) if _numeric(k) is not None else float("inf"), rel) for k in keys)
