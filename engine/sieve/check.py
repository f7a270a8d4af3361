"""Which commands and tests exist, with which tags and arguments (RFC 5228 and the
extensions we support), checked once after parsing: a script naming an unknown command,
an extension it did not `require`, or a wrong argument is refused with its line."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .lexer import SieveError
from . import editheader, mailto
from .parser import Command, Tag, Test

EXTENSIONS = frozenset({
    "fileinto", "envelope", "imap4flags", "copy", "body", "variables", "relational",
    "comparator-i;ascii-numeric", "comparator-i;octet", "comparator-i;ascii-casemap",
    "subaddress", "regex", "mailbox", "reject", "ereject", "encoded-character", "vacation", "date", "index",
    "vacation-seconds", "spamtest", "spamtestplus", "virustest", "environment", "duplicate", "include", "enotify", "editheader",
})
COMPARATORS = {"i;octet": None, "i;ascii-casemap": None, "i;ascii-numeric": "comparator-i;ascii-numeric"}
RELATIONS = {"gt", "ge", "lt", "le", "eq", "ne"}

# tag -> (extension or None, argument kind or None, group)
_MATCH = {"is": (None, None, "match"), "contains": (None, None, "match"), "matches": (None, None, "match"),
          "regex": ("regex", None, "match"), "count": ("relational", "str", "match"),
          "value": ("relational", "str", "match"), "comparator": (None, "str", "comparator")}
_PART = {"all": (None, None, "part"), "localpart": (None, None, "part"), "domain": (None, None, "part"),
         "user": ("subaddress", None, "part"), "detail": ("subaddress", None, "part")}
_FLAGS = {"flags": ("imap4flags", "strlist", "flags")}
_INDEX = {"index": ("index", "num", "index"), "last": ("index", None, "last")}
_ZONE = {"zone": ("date", "str", "zone"), "originalzone": ("date", None, "zone")}

# name -> (extension, tags, positional kinds, tests: "none"/"one"/"list"/"block"-only)
COMMANDS = {
    "require": (None, {}, ["strlist"]),
    "if": (None, {}, []), "elsif": (None, {}, []), "else": (None, {}, []),
    "stop": (None, {}, []), "keep": (None, _FLAGS, []), "discard": (None, {}, []),
    "redirect": (None, {"copy": ("copy", None, "copy")}, ["str"]),
    "fileinto": ("fileinto", {**_FLAGS, "copy": ("copy", None, "copy"), "create": ("mailbox", None, "create")}, ["str"]),
    "reject": ("reject", {}, ["str"]), "ereject": ("ereject", {}, ["str"]),
    "setflag": ("imap4flags", {}, ["strlist", "?strlist"]), "addflag": ("imap4flags", {}, ["strlist", "?strlist"]),
    "removeflag": ("imap4flags", {}, ["strlist", "?strlist"]),
    "vacation": ("vacation", {"days": ("vacation", "num", "period"), "seconds": ("vacation-seconds", "num", "period"),
                              "subject": ("vacation", "str", "subject"), "from": ("vacation", "str", "from"),
                              "addresses": ("vacation", "strlist", "addresses"), "mime": ("vacation", None, "mime"),
                              "handle": ("vacation", "str", "handle")}, ["str"]),
    "include": ("include", {"personal": ("include", None, "location"), "global": ("include", None, "location"),
                            "once": ("include", None, "once"), "optional": ("include", None, "optional")}, ["str"]),
    "return": ("include", {}, []),
    "global": ("include", {}, ["strlist"]),
    "notify": ("enotify", {"from": ("enotify", "str", "from"), "importance": ("enotify", "str", "importance"),
                           "options": ("enotify", "strlist", "options"), "message": ("enotify", "str", "message")},
               ["str"]),
    "addheader": ("editheader", {"last": ("editheader", None, "last")}, ["str", "str"]),
    "deleteheader": ("editheader", {**_MATCH, "index": ("editheader", "num", "index"),
                                    "last": ("editheader", None, "last")}, ["str", "?strlist"]),
    "set": ("variables", {**{k: ("variables", None, k) for k in
                             ("lower", "upper", "lowerfirst", "upperfirst", "quotewildcard", "length")},
                          "encodeurl": ("enotify", None, "encodeurl")}, ["str", "str"]),
}
TESTS = {
    "true": (None, {}, []), "false": (None, {}, []), "not": (None, {}, []),
    "allof": (None, {}, []), "anyof": (None, {}, []),
    "exists": (None, {}, ["strlist"]),
    "size": (None, {"over": (None, None, "size"), "under": (None, None, "size")}, ["num"]),
    "header": (None, {**_MATCH, **_INDEX}, ["strlist", "strlist"]),
    "address": (None, {**_MATCH, **_PART, **_INDEX}, ["strlist", "strlist"]),
    "date": ("date", {**_MATCH, **_ZONE, **_INDEX}, ["str", "str", "strlist"]),
    "currentdate": ("date", {**_MATCH, "zone": ("date", "str", "zone")}, ["str", "strlist"]),
    "envelope": ("envelope", {**_MATCH, **_PART}, ["strlist", "strlist"]),
    "body": ("body", {**_MATCH, "raw": ("body", None, "transform"), "text": ("body", None, "transform"),
                      "content": ("body", "strlist", "transform")}, ["strlist"]),
    "string": ("variables", _MATCH, ["strlist", "strlist"]),
    "hasflag": ("imap4flags", _MATCH, ["strlist", "?strlist"]),
    "mailboxexists": ("mailbox", {}, ["strlist"]),
    "spamtest": ("spamtest", {**_MATCH, "percent": ("spamtestplus", None, "percent")}, ["str"]),
    "virustest": ("virustest", _MATCH, ["str"]),
    "environment": ("environment", _MATCH, ["str", "strlist"]),
    "valid_notify_method": ("enotify", {}, ["strlist"]),
    "notify_method_capability": ("enotify", _MATCH, ["str", "str", "strlist"]),
    "duplicate": ("duplicate", {"handle": ("duplicate", "str", "handle"), "header": ("duplicate", "str", "id"),
                                "uniqueid": ("duplicate", "str", "id"), "seconds": ("duplicate", "num", "seconds"),
                                "last": ("duplicate", None, "last")}, []),
}
_SUBTESTS = {"not": (1, 1), "allof": (1, None), "anyof": (1, None)}


@dataclass
class Node:
    """A checked command or test: tags as {name: value or True}, positional arguments."""
    name: str
    opts: dict
    pos: list
    tests: list = field(default_factory=list)
    block: list | None = None
    line: int = 0


def check(commands: list[Command]) -> tuple[list[Node], set[str]]:
    required: set[str] = set()
    nodes = _block(commands, required, top=True)
    return nodes, required


def _block(commands: list[Command], required: set[str], top: bool = False) -> list[Node]:
    out: list[Node] = []
    prev = None
    for cmd in commands:
        if cmd.name == "require":
            if not top or (prev is not None and prev != "require"):
                raise SieveError(cmd.line, "require must come before any other command")
            node = _node(cmd, COMMANDS, required)
            for ext in node.pos[0]:
                if ext not in EXTENSIONS:
                    raise SieveError(cmd.line, f"unsupported extension {ext!r}")
                required.add(ext)
                if ext == "spamtestplus":            # RFC 5235 §3.2: it includes spamtest
                    required.add("spamtest")
            prev = "require"
            continue
        if cmd.name in ("elsif", "else") and prev not in ("if", "elsif"):
            raise SieveError(cmd.line, f"{cmd.name} without if")
        node = _node(cmd, COMMANDS, required)
        if cmd.name in ("if", "elsif"):
            if len(cmd.tests) != 1 or cmd.block is None:
                raise SieveError(cmd.line, f"{cmd.name} needs one test and a block")
            node.tests = [_test(cmd.tests[0], required)]
        elif cmd.tests:
            raise SieveError(cmd.line, f"{cmd.name} takes no test")
        if cmd.name in ("if", "elsif", "else"):
            if cmd.block is None:
                raise SieveError(cmd.line, f"{cmd.name} needs a block")
            node.block = _block(cmd.block, required)
        elif cmd.block is not None:
            raise SieveError(cmd.line, f"{cmd.name} takes no block")
        out.append(node)
        prev = cmd.name
    return out


def _test(test: Test, required: set[str]) -> Node:
    node = _node(test, TESTS, required)
    low, high = _SUBTESTS.get(test.name, (0, 0))
    if len(test.tests) < low or (high is not None and len(test.tests) > high):
        raise SieveError(test.line, f"wrong number of tests for {test.name}")
    if test.name in ("allof", "anyof") and not test.tests:
        raise SieveError(test.line, f"{test.name} needs a test list")
    node.tests = [_test(t, required) for t in test.tests]
    return node


def _node(item, table: dict, required: set[str]) -> Node:
    what = "command" if table is COMMANDS else "test"
    spec = table.get(item.name)
    if spec is None:
        raise SieveError(item.line, f"unknown {what} {item.name!r}")
    ext, tags, kinds = spec
    if ext and ext not in required:
        raise SieveError(item.line, f"{what} {item.name!r} needs require \"{ext}\"")
    opts: dict = {}
    groups: set[str] = set()
    args = list(item.args)
    pos: list = []
    while args:
        arg = args.pop(0)
        if not isinstance(arg, Tag):
            pos.append(arg)
            continue
        tspec = tags.get(arg.name)
        if tspec is None or (tspec[0] and tspec[0] not in required):
            raise SieveError(item.line, f"{item.name}: unknown or unrequired tag :{arg.name}")
        text, kind, group = tspec
        if group in groups:
            raise SieveError(item.line, f"{item.name}: conflicting tag :{arg.name}")
        groups.add(group)
        value: object = True
        if kind == "num":
            if not args or not isinstance(args[0], int):
                raise SieveError(item.line, f"{item.name}: :{arg.name} needs a number")
            value = args.pop(0)
        elif kind:
            if not args or isinstance(args[0], (Tag, int)):
                raise SieveError(item.line, f"{item.name}: :{arg.name} needs an argument")
            value = args.pop(0)
            if kind == "str":
                if len(value) != 1:
                    raise SieveError(item.line, f"{item.name}: :{arg.name} takes one string")
                value = value[0]
        opts[arg.name] = value
    _check_opts(item, opts, required)
    node = Node(item.name, opts, _positional(item, kinds, pos), line=item.line)
    constant = "variables" not in required
    if item.name == "redirect" and (constant or "${" not in node.pos[0]):
        valid_address(node.pos[0], item.line)     # a constant address is checked now
    if item.name == "set" and not re.fullmatch(r"(?i:global\.)?[A-Za-z_][A-Za-z0-9_]*", node.pos[0]):
        raise SieveError(item.line, f"set: invalid variable name {node.pos[0]!r}")
    if item.name in ("addheader", "deleteheader") and (constant or "${" not in node.pos[0]) \
            and not editheader.FIELD_NAME.match(node.pos[0]):
        raise SieveError(item.line, f"{item.name}: invalid field name {node.pos[0]!r}")
    if item.name == "notify":
        if "importance" in opts and opts["importance"] not in ("1", "2", "3"):
            raise SieveError(item.line, f"notify: invalid :importance {opts['importance']!r}")
        if constant or "${" not in node.pos[0]:
            mailto.parse(node.pos[0], item.line)          # a constant URI is checked now
    if item.name == "global":
        if "variables" not in required:
            raise SieveError(item.line, 'global needs require "variables"')
        for name in node.pos[0]:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise SieveError(item.line, f"global: invalid variable name {name!r}")
    if item.name == "include" and not re.fullmatch(r"[^/\\\x00-\x1f\x7f.][^/\\\x00-\x1f\x7f]{0,127}", node.pos[0]):
        raise SieveError(item.line, f"include: invalid script name {node.pos[0]!r}")
    if "regex" in opts:
        for key in node.pos[-1]:
            if constant or "${" not in key:
                compile_regex(key, item.line)
    return node


def compile_regex(key: str, line: int):
    try:
        return re.compile(key)
    except (re.error, RecursionError, OverflowError) as e:
        raise SieveError(line, f"invalid regex {key!r}: {e}") from None


def valid_address(address: str, line: int) -> str:
    """A redirect target: one plain addr-spec (no display name, no list)."""
    address = address.strip()
    if "<" in address and address.endswith(">"):       # "Name <addr>": the address (as Pigeonhole)
        address = address[address.rindex("<") + 1:-1].strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c in address for c in ' <>,;()\r\n\t"'):
        raise SieveError(line, f"redirect: invalid address {address!r}")
    return address


def _check_opts(item, opts: dict, required: set[str]) -> None:
    cmp = opts.get("comparator")
    if cmp is not None:
        if cmp not in COMPARATORS:
            raise SieveError(item.line, f"unknown comparator {cmp!r}")
        if COMPARATORS[cmp] and COMPARATORS[cmp] not in required:
            raise SieveError(item.line, f"comparator {cmp!r} needs require \"{COMPARATORS[cmp]}\"")
    for rel in ("count", "value"):
        if rel in opts and opts[rel].lower() not in RELATIONS:
            raise SieveError(item.line, f"unknown relation {opts[rel]!r}")
    if "last" in opts and "index" not in opts and item.name not in ("duplicate", "addheader"):
        raise SieveError(item.line, ":last needs :index")
    if opts.get("index") == 0:
        raise SieveError(item.line, ":index must be 1 or more")
    if item.name == "size" and len(opts) != 1:
        raise SieveError(item.line, "size needs :over or :under")
    if opts.get("comparator") == "i;ascii-numeric" and opts.keys() & {"contains", "matches", "regex"}:
        raise SieveError(item.line, "i;ascii-numeric supports only :is, :value and :count")


def _positional(item, kinds: list[str], pos: list) -> list:
    out = []
    for kind in kinds:
        optional = kind.startswith("?")
        kind = kind.lstrip("?")
        if optional and len(pos) < len(kinds) - len(out):
            continue
        if not pos:
            raise SieveError(item.line, f"{item.name}: missing argument")
        arg = pos.pop(0)
        if kind == "num" and not isinstance(arg, int):
            raise SieveError(item.line, f"{item.name}: expected a number")
        if kind in ("str", "strlist") and not isinstance(arg, list):
            raise SieveError(item.line, f"{item.name}: expected a string")
        if kind == "str" and len(arg) != 1:
            raise SieveError(item.line, f"{item.name}: expected one string, not a list")
        out.append(arg[0] if kind == "str" else arg)
    if pos:
        raise SieveError(item.line, f"{item.name}: too many arguments")
    return out
