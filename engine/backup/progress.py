"""How long work reports progress without knowing about terminals: the CLI passes a
rich-backed Progress on a terminal and this silent one on a pipe."""
from __future__ import annotations


class Progress:
    def start(self, description: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def note(self, message: str) -> None:
        """A line worth showing even on a pipe with -v (a skipped or damaged file)."""
        pass


SILENT = Progress()
