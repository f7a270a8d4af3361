"""What a Sieve run decided for one message and one mailbox."""
from __future__ import annotations

from dataclasses import dataclass, field

MAX_REDIRECTS = 4           # per message and mailbox (Pigeonhole: sieve_max_redirects = 4)
MAX_ACTIONS = 32            # (Pigeonhole: sieve_max_actions = 32)
MAX_STEPS = 20_000          # tests, commands and comparisons per run


@dataclass
class Action:
    kind: str               # "keep", "fileinto", "discard", "redirect", "reject", "ereject"
    arg: str = ""           # the folder, the address or the reason
    flags: tuple[str, ...] = ()
    create: bool = False    # fileinto :create
    details: dict = field(default_factory=dict)     # vacation: seconds, subject, from, addresses, mime, handle


@dataclass
class Result:
    actions: list[Action] = field(default_factory=list)
    implicit_keep: bool = True
    keep_flags: tuple[str, ...] = ()      # the flags an implicit keep stores with
    error: str = ""                       # "line N: ..." when the script failed: INBOX then
    raw: bytes | None = None              # the message as editheader left it (None: unchanged)
    failed_script: str = ""               # its name (a global one's is "before.d/NAME" or "after.d/NAME")

    def folders(self) -> list[tuple[str, tuple[str, ...], bool]]:
        """Where copies go: (folder, flags, create); INBOX for keep and implicit keep."""
        out = []
        for a in self.actions:
            if a.kind == "keep":
                out.append(("INBOX", a.flags, False))
            elif a.kind == "fileinto":
                out.append((a.arg, a.flags, a.create))
        if self.implicit_keep:
            out.append(("INBOX", self.keep_flags, False))
        seen, unique = set(), []
        for item in out:
            if item[0] not in seen:
                seen.add(item[0])
                unique.append(item)
        return unique

    def redirects(self) -> list[str]:
        return [a.arg for a in self.actions if a.kind == "redirect"]

    def rejection(self) -> str | None:
        for a in self.actions:
            if a.kind in ("reject", "ereject"):
                return a.arg
        return None


def failed(error: str) -> Result:
    """A script error or a limit: nothing the script did counts; the message goes to INBOX."""
    return Result(actions=[], implicit_keep=True, error=error)
