#!/usr/bin/env python3
"""Sieve's cost per message: a 50-rule script (header and address tests, the last rule the
one that matches nothing) run on a typical message, and compiling it. Aim: under 1 ms a
message (issue 17).

    python bench/sieve_rules.py [--rules 50] [--messages 2000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.sieve.interp import Script  # noqa: E402 - after sys.path is set
from engine.sieve.message import SieveMessage  # noqa: E402 - after sys.path is set

MESSAGE = (Path(__file__).resolve().parent.parent / "tests" / "sieve_corpus" / "plain.eml").read_bytes()


def script_text(rules: int) -> str:
    lines = ['require ["fileinto", "envelope"];']
    for i in range(rules):
        lines.append(f'if anyof (header :contains "subject" "word{i}", address :is "from" "user{i}@example.net") '
                     f'{{ fileinto "F{i}"; stop; }}')
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=50)
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    text = script_text(args.rules)
    start = time.perf_counter()
    script = Script(text)
    compiled = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.messages):
        result = script.run(SieveMessage(MESSAGE, "alice@example.com", "bob@example.org"))
    per = (time.perf_counter() - start) / args.messages
    assert result.implicit_keep and not result.error
    print(f"{args.rules}-rule script: compile {compiled * 1e3:.2f} ms; "
          f"{per * 1e3:.3f} ms a message (message parsing included)")


if __name__ == "__main__":
    main()
