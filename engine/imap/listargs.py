"""LIST's arguments (RFC 3501 §6.3.8 and the extended form of RFC 5258 §6), parsed into
a `listing.Options` and the patterns, before any disk is touched:

    LIST [(selection options)] reference (pattern | (pattern ...)) [RETURN (return options)]

Selection options: SUBSCRIBED, REMOTE (we have no remote mailboxes: it changes nothing),
RECURSIVEMATCH (only beside another selection option), SPECIAL-USE (RFC 6154).
Return options: SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS (items) (RFC 5819).
An option we do not know is BAD (RFC 5258 §3: a client must not send one it did not
see advertised), so is a malformed list; STATUS items are checked by `status_items`.
"""
from __future__ import annotations

from .listing import Options
from .parser import Atom, ParseError, as_text

SELECTION = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
RETURNS = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"}
MAX_PATTERNS = 100


def parse_list(args: list, status_items) -> tuple[str, list[str], Options]:
    """(reference, patterns, options) of a LIST command's arguments. status_items turns
    the list after RETURN's STATUS into the checked item names (ParseError if it cannot)."""
    args = list(args)
    options = Options()
    if args and isinstance(args[0], list):
        options.extended = True
        _selection(args.pop(0), options)
    if len(args) == 4 and isinstance(args[2], Atom) and args[2].upper() == "RETURN":
        options.extended = True
        if not isinstance(args[3], list):
            raise ParseError("RETURN needs a parenthesised list of options")
        _returns(args[3], options, status_items)
        args = args[:2]
    if len(args) != 2:
        raise ParseError("LIST needs a reference and a mailbox pattern")
    reference = as_text(args[0], "reference")
    if isinstance(args[1], list):
        options.extended = True
        if not args[1]:
            raise ParseError("LIST needs at least one mailbox pattern")
        if len(args[1]) > MAX_PATTERNS:
            raise ParseError(f"LIST takes at most {MAX_PATTERNS} patterns")
        patterns = [as_text(p, "mailbox pattern") for p in args[1]]
    else:
        patterns = [as_text(args[1], "mailbox pattern")]
    return reference, patterns, options


def _words(items: list, what: str) -> list[str]:
    out = []
    for item in items:
        if not isinstance(item, Atom):
            raise ParseError(f"{what} must be atoms")
        out.append(item.upper())
    return out


def _selection(items: list, options: Options) -> None:
    chosen = _words(items, "LIST selection options")
    for word in chosen:
        if word not in SELECTION:
            raise ParseError(f"Unknown LIST selection option {word[:30]}")
    options.subscribed_only = "SUBSCRIBED" in chosen
    options.special_use_only = "SPECIAL-USE" in chosen
    options.recursive = "RECURSIVEMATCH" in chosen
    # RFC 5258 §3: RECURSIVEMATCH modifies another selection option and never stands alone
    if options.recursive and not (options.subscribed_only or options.special_use_only):
        raise ParseError("RECURSIVEMATCH needs another selection option beside it")
    options.return_subscribed = options.subscribed_only   # SUBSCRIBED implies RETURN (SUBSCRIBED)


def _returns(items: list, options: Options, status_items) -> None:
    i = 0
    while i < len(items):
        item = items[i]
        if not isinstance(item, Atom):
            raise ParseError("LIST return options must be atoms")
        word = item.upper()
        if word not in RETURNS:
            raise ParseError(f"Unknown LIST return option {word[:30]}")
        if word == "STATUS":
            if i + 1 >= len(items) or not isinstance(items[i + 1], list) or not items[i + 1]:
                raise ParseError("RETURN STATUS needs a list of status items")
            if options.status_items is not None:
                raise ParseError("RETURN STATUS given twice")
            options.status_items = status_items(items[i + 1])
            i += 1
        elif word == "SUBSCRIBED":
            options.return_subscribed = True
        elif word == "CHILDREN":
            options.return_children = True
        elif word == "SPECIAL-USE":
            options.return_special_use = True
        i += 1
