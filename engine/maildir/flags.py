"""Flags in message file names, and dovecot-keywords: the keyword behind each letter.

A file name's info "2,<letters>" holds one capital letter per system flag (sorted) and
a lower-case letter per keyword: letter "a" + i is keyword i of the folder's
dovecot-keywords ("<i> <keyword>" lines, at most 26). New letters are given under the
uidlist dotlock, and the file is replaced by rename.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .. import nofollow
from ..errors import InvalidInput
from ..root import atomic_write
from .names import FILE_MODE, KEYWORDS
from .uidlist import dotlock

FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "$Forwarded": "P", "\\Answered": "R",
                "\\Seen": "S", "\\Deleted": "T"}
FORWARDED = "$Forwarded"
MAX_KEYWORDS = 26
_LETTER_FLAGS = {letter: flag for flag, letter in FLAG_LETTERS.items()}
_FLAG_BY_LOWER = {flag.lower(): flag for flag in FLAG_LETTERS}
_KEYWORD_BAD_CHARS = set('(){%*"\\]')

# System flags other than $Forwarded (stored as a letter and a keyword).
SYSTEM_FLAGS = frozenset(FLAG_LETTERS) - {FORWARDED}


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags spelled canonically; keywords checked as IMAP atoms."""
    if isinstance(flags, str):
        raise InvalidInput(f"flags must be a collection of names, not the string {flags!r}")
    out = set()
    for flag in flags:
        canonical = _FLAG_BY_LOWER.get(flag.lower())
        if canonical:
            out.add(canonical)
        elif flag.startswith("\\"):
            raise InvalidInput(f"{flag}: not a storable system flag; use one of "
                               f"{', '.join(sorted(FLAG_LETTERS))} or a keyword")
        elif not flag or any(ord(c) <= 0x20 or ord(c) >= 0x7F or c in _KEYWORD_BAD_CHARS for c in flag):
            raise InvalidInput(f"{flag!r}: not a valid IMAP keyword (an atom of printable ASCII)")
        else:
            out.add(flag)
    return frozenset(out)


def flags_from_info(info: str, letters: dict[str, str]) -> frozenset[str]:
    """Flags of an info part "2,<letters>[,<extra>]"; unknown letters are ignored.
    letters: keyword letter -> keyword (letter_map)."""
    if not info.startswith("2,"):
        return frozenset()
    flags = set()
    for letter in info[2:].partition(",")[0]:
        flag = _LETTER_FLAGS.get(letter) or letters.get(letter)
        if flag:
            flags.add(flag)
    return frozenset(flags)


# -- dovecot-keywords --------------------------------------------------------------

def parse_keywords(text: str) -> dict[int, str]:
    """index -> keyword from the text of a dovecot-keywords file."""
    keywords = {}
    for line in text.splitlines():
        index, _, name = line.partition(" ")
        if index.isdigit() and int(index) < MAX_KEYWORDS and name:
            keywords[int(index)] = name
    return keywords


def letters_of(keywords: dict[int, str]) -> dict[str, str]:
    """letter -> keyword, for index -> keyword."""
    return {chr(ord("a") + i): name for i, name in keywords.items()}


_KEYWORDS_CACHE: dict[Path, tuple[tuple, dict[int, str]]] = {}
_KEYWORDS_CACHE_SIZE = 256


def read_keywords(folder_path: Path) -> dict[int, str]:
    """index -> keyword from dovecot-keywords; parsed again only when the file's inode,
    size or mtime changed (it is replaced by rename), so a STORE on many messages costs
    one stat() per message. Returns a fresh dict the caller may change."""
    path = folder_path / KEYWORDS
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {}
    ident = (st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _KEYWORDS_CACHE.get(folder_path)
    if cached is not None and cached[0] == ident:
        return dict(cached[1])
    try:
        text = nofollow.read_text(path, "replace")
    except FileNotFoundError:      # or a link (LinkRefused): no keywords
        return {}
    keywords = parse_keywords(text)
    if len(_KEYWORDS_CACHE) >= _KEYWORDS_CACHE_SIZE:
        _KEYWORDS_CACHE.clear()
    _KEYWORDS_CACHE[folder_path] = (ident, keywords)
    return dict(keywords)


def keywords_ident(folder_path: Path) -> tuple:
    """What stat() says of dovecot-keywords (() when missing): a sync made with other
    keywords cannot be reused."""
    try:
        st = os.lstat(folder_path / KEYWORDS)
    except FileNotFoundError:
        return ()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def letter_map(folder_path: Path) -> dict[str, str]:
    """letter -> keyword of a folder."""
    return letters_of(read_keywords(folder_path))


def _keyword_index(keywords: dict[int, str]) -> dict[str, int]:
    return {name.lower(): i for i, name in keywords.items()}


def keyword_letters(folder_path: Path, keywords: list[str]) -> list[str]:
    """The letters of keywords in this folder, allocating new ones in dovecot-keywords."""
    index = _keyword_index(read_keywords(folder_path))
    if any(k.lower() not in index for k in keywords):
        with dotlock(folder_path):
            current = read_keywords(folder_path)
            for keyword in keywords:
                if keyword.lower() not in _keyword_index(current):
                    free = [i for i in range(MAX_KEYWORDS) if i not in current]
                    if not free:
                        raise InvalidInput(f"{keyword}: this folder already has {MAX_KEYWORDS} "
                                           f"keywords, the most Maildir can store")
                    current[free[0]] = keyword
            text = "".join(f"{i} {name}\n" for i, name in sorted(current.items()))
            atomic_write(folder_path / KEYWORDS, text, mode=FILE_MODE)
            index = _keyword_index(current)
    return [chr(ord("a") + index[k.lower()]) for k in keywords]


def info_letters(folder_path: Path, flags: frozenset[str]) -> str:
    """The letters after ':2,' for a flag set, allocating keyword letters as needed."""
    letters = [FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS]
    # Dovecot ignores "P", so $Forwarded is also written as a keyword letter.
    keywords = sorted(f for f in flags if f not in FLAG_LETTERS or f == FORWARDED)
    if keywords:
        letters += keyword_letters(folder_path, keywords)
    return "".join(sorted(letters))


# -- a flag change on whatever letters a file has now --------------------------------

class FlagChange:
    """STORE's +FLAGS, -FLAGS or FLAGS for one folder, worked on a file name's letters:
    the new letters come from the letters the file has at the moment of the rename, so
    flags another session or Dovecot set meanwhile are kept (Folder.apply_flag_change).
    Keyword letters to add are given once, here; results are remembered per old
    letters, so a change of 100,000 messages costs a dict lookup each."""

    def __init__(self, folder_path: Path, add: Iterable[str] = (), remove: Iterable[str] = (),
                 replace: Iterable[str] | None = None):
        self.path = folder_path
        self.replace = None if replace is None else info_letters(folder_path, normalize_flags(replace))
        self.add = frozenset(info_letters(folder_path, normalize_flags(add)))
        self._remove_flags = normalize_flags(remove)
        self._letters: dict[str, str] = {}        # letter -> keyword, as last read
        self.remove = self._remove_letters()
        self._new: dict[str, str] = {}
        self._flags: dict[str, frozenset[str]] = {}

    def _remove_letters(self) -> frozenset[str]:
        """Letters of the flags to remove; a keyword without a letter is on no message."""
        self._letters = letter_map(self.path)
        gone = {FLAG_LETTERS[f] for f in self._remove_flags if f in FLAG_LETTERS}
        names = {f.lower() for f in self._remove_flags if f not in FLAG_LETTERS or f == FORWARDED}
        gone.update(letter for letter, name in self._letters.items() if name.lower() in names)
        return frozenset(gone)

    def letters(self, old: str) -> str:
        """The letters after ':2,' for a file whose letters are old now."""
        new = self._new.get(old)
        if new is None:
            if self.replace is not None:
                new = self.replace
            else:
                if any("a" <= c <= "z" and c not in self._letters for c in old):
                    self.remove = self._remove_letters()   # a keyword given its letter since
                new = "".join(sorted((set(old) | self.add) - self.remove))
            self._new[old] = new
        return new

    def flags(self, letters: str) -> frozenset[str]:
        """The flags of a file with these letters."""
        flags = self._flags.get(letters)
        if flags is None:
            if any("a" <= c <= "z" and c not in self._letters for c in letters):
                self._letters = letter_map(self.path)
            flags = self._flags[letters] = flags_from_info("2," + letters, self._letters)
        return flags
