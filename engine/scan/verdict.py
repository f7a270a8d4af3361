"""What a virus scanner says about some bytes, and the one error every scanner raises."""
from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,198}[\x21-\x7e])?\Z")


@dataclass(frozen=True)
class Found:
    """The scan's result: infected with the virus `name`, or clean (name '')."""
    name: str = ""
    engine: str = ""                   # "ClamAV", or the external command's program name

    @property
    def infected(self) -> bool:
        return bool(self.name)


class ScanFailed(Exception):
    """The scanner gave no verdict (down, timed out, answered garbage): never a 5xx."""


def virus_name(text: str) -> str | None:
    """A virus name as a scanner gave it, when it is one we may put in a reply line:
    printable ASCII without line breaks, at most 200 characters."""
    return text if _NAME.match(text) else None


@dataclass(frozen=True)
class SpamVerdict:
    """A spam scanner's answer: its score, its own threshold, its action ('reject', 'add
    header', 'rewrite subject', 'greylist', 'soft reject', 'no action'; spamd: 'spam' or
    'no action') and the names of the rules that matched, the heaviest first."""
    engine: str                        # "rspamd" or "SpamAssassin"
    score: float
    required: float
    action: str
    symbols: tuple[str, ...] = ()

    @property
    def spam(self) -> bool:
        return self.action not in ("no action", "greylist", "soft reject")
