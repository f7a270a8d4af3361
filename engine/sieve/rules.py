"""`mailctl rule`: hMailServer-style rules written as Sieve, for those who never want to see
Sieve. An account's rules are a generated section of its active script (engine/sieve/
generated.py), the server's global rules the script sieve/before.d/mailctl-rules.sieve;
hand-written Sieve is left alone. Each rule is kept as a JSON comment line above the Sieve
it became, so `rule list` reads back exactly what `rule add` was given.

A condition (--if) is FIELD OPERATOR VALUE:
    FIELD     from, to, cc, subject, body, size, recipient (the envelope's), header:NAME
    OPERATOR  is (equals), contains, matches (wildcards * and ?), regex, over, under (size:
              a number with K or M); "not" before it negates
An action (--then) is one of:
    move FOLDER      fileinto :create (the folder is made when missing); FOLDER may hold
    copy FOLDER      %YEAR%, %MONTH%, %DAY% (today's date when the message arrives)
    delete           discard
    forward ADDRESS  redirect (the copy in the mailbox stays: forward-only ADDRESS drops it)
    flag FLAG        addflag (\\Seen, \\Flagged, or a keyword)
    reply TEXT       vacation :days 1 (RFC 3834: never to lists or robots)
    set-header NAME VALUE   deleteheader and addheader (editheader): the copy is stored so
    stop             no later rule runs
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from ..errors import InvalidInput
from ..root import atomic_write
from .generated import edited, quote, section_lines, write_section
from .lexer import SieveError
from .interp import Script

SECTION = "rules"
GLOBAL_SCRIPT = "mailctl-rules.sieve"
_RULE = "# mailctl-rule "
FIELDS = ("from", "to", "cc", "subject", "body", "size", "recipient")
OPERATORS = ("is", "equals", "contains", "matches", "regex", "over", "under")
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}\Z")      # RFC 5322 field name
_DATE_MACROS = {"%YEAR%": "year", "%MONTH%": "month", "%DAY%": "day"}


def _words(text: str, option: str) -> list[str]:
    """Shell-like words, quotes removed, backslashes kept (\\Seen, regexes)."""
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split, lexer.escape = True, ""
    try:
        return list(lexer)
    except ValueError as e:
        raise InvalidInput(f"{option} {text!r}: {e}") from None


def parse_condition(text: str) -> dict:
    words = _words(text, "--if")
    negate = len(words) == 4 and words[1].lower() == "not"
    if negate:
        words = [words[0], *words[2:]]
    if len(words) != 3:
        raise InvalidInput(f"--if {text!r}: expected FIELD OPERATOR VALUE, like 'subject contains \"invoice\"'")
    field, op, value = words[0].lower(), words[1].lower(), words[2]
    if not (field in FIELDS or (field.startswith("header:") and _HEADER_NAME.match(field[7:]))):
        raise InvalidInput(f"--if {text!r}: field must be one of {', '.join(FIELDS)} or header:NAME")
    if op not in OPERATORS:
        raise InvalidInput(f"--if {text!r}: operator must be one of {', '.join(OPERATORS)}")
    if (field == "size") != (op in ("over", "under")):
        raise InvalidInput(f"--if {text!r}: size goes with over or under, and they with size only")
    if field == "size" and not re.fullmatch(r"\d{1,12}[KMkm]?", value):
        raise InvalidInput(f"--if {text!r}: a size is a number, with K or M")
    if op == "regex":
        try:
            Script(f'require "regex";\nif header :regex "x" {quote(value)} {{ keep; }}\n')
        except SieveError as e:
            raise InvalidInput(f"--if {text!r}: {e}") from None
    return {"field": field, "op": "is" if op == "equals" else op, "value": value, "not": negate}


def parse_action(text: str) -> dict:
    words = _words(text, "--then")
    verb, args = (words[0].lower(), words[1:]) if words else ("", [])
    if verb == "reply" and args:
        args = [" ".join(args)]
    if verb == "set-header" and len(args) >= 2:
        from .editheader import FIELD_NAME
        if not FIELD_NAME.match(args[0]) or args[0].lower() in ("received", "auto-submitted"):
            raise InvalidInput(f"--then {text!r}: {args[0]!r} is not a header field a rule may set")
        return {"do": verb, "arg": args[0], "value": " ".join(args[1:])}
    need = {"move": 1, "copy": 1, "forward": 1, "forward-only": 1, "flag": 1, "reply": 1, "delete": 0, "stop": 0}
    if verb not in need or len(args) != need[verb]:
        raise InvalidInput(f"--then {text!r}: expected move FOLDER, copy FOLDER, delete, forward ADDRESS, "
                           f"forward-only ADDRESS, flag FLAG, reply TEXT, set-header NAME VALUE or stop")
    if verb in ("forward", "forward-only") and not re.fullmatch(r"[^@\s\"\\]+@[^@\s\"\\]+\.[^@\s\"\\]+", args[0]):
        raise InvalidInput(f"--then {text!r}: not an address")
    if verb in ("move", "copy"):
        from ..foldernames import split
        split(re.sub("|".join(_DATE_MACROS), "2000", args[0]), new=True)
    return {"do": verb, "arg": args[0] if args else ""}


def _test(c: dict) -> tuple[str, set[str]]:
    field, op, value = c["field"], c["op"], c["value"]
    need: set[str] = set()
    if field == "size":
        test = f"size :{op} {value.upper()}"
    else:
        match = ":regex" if op == "regex" else f":{op}"
        need |= {"regex"} if op == "regex" else set()
        if field in ("from", "to", "cc") and op == "is":
            test = f"address :all :is {quote(field)} {quote(value)}"
        elif field == "body":
            test, need = f"body :text {match} {quote(value)}", need | {"body"}
        elif field == "recipient":
            test, need = f"envelope :all {match} \"to\" {quote(value)}", need | {"envelope"}
        else:
            name = field[7:] if field.startswith("header:") else field
            test = f"header {match} {quote(name)} {quote(value)}"
    return (f"not {test}" if c["not"] else test), need


def _folder(arg: str) -> tuple[str, list[str], set[str]]:
    """The folder's Sieve string, the lines that set its date variables, the extensions."""
    used = [v for k, v in _DATE_MACROS.items() if k in arg]
    if not used:
        return quote(arg), [], set()
    for k, v in _DATE_MACROS.items():
        arg = arg.replace(k, "${mailctl_" + v + "}")
    lines = [f'if currentdate :matches "{v}" "*" {{ set "mailctl_{v}" "${{1}}"; }}' for v in used]
    return quote(arg), lines, {"date", "variables"}


def _actions(a: dict, n: int) -> tuple[list[str], set[str]]:
    do, arg = a["do"], a["arg"]
    if do in ("move", "copy"):
        folder, pre, need = _folder(arg)
        copy = " :copy" if do == "copy" else ""
        return [*pre, f"fileinto{copy} :create {folder};"], need | {"fileinto", "mailbox"} | ({"copy"} if copy else set())
    if do == "delete":
        return ["discard;"], set()
    if do == "forward":
        return [f"redirect :copy {quote(arg)};"], {"copy"}
    if do == "forward-only":
        return [f"redirect {quote(arg)};"], set()
    if do == "flag":
        return [f"addflag {quote(arg)};"], {"imap4flags"}
    if do == "set-header":
        return [f"deleteheader {quote(arg)};", f"addheader {quote(arg)} {quote(a['value'])};"], {"editheader"}
    if do == "reply":
        return [f'vacation :days 1 :handle "mailctl-rule-{n}" {quote(arg)};'], {"vacation"}
    return ["stop;"], set()


def _sieve(rules: list[dict]) -> tuple[list[str], list[str]]:
    """(requires, body lines) for the rules, in order."""
    need: set[str] = set()
    lines: list[str] = []
    for n, rule in enumerate(rules, 1):
        tests = []
        for c in rule["if"]:
            test, ext = _test(c)
            tests.append(test)
            need |= ext
        body = []
        # flags first: a copy filed by the same rule gets them (RFC 5232 takes the flags set so far)
        for a in sorted(rule["then"], key=lambda a: a["do"] not in ("flag", "set-header")):
            acts, ext = _actions(a, n)
            body += acts
            need |= ext
        joined = tests[0] if len(tests) == 1 else f"{'anyof' if rule['any'] else 'allof'} ({', '.join(tests)})"
        lines += [_RULE + json.dumps(rule, ensure_ascii=True), f"if {joined} {{", *("  " + b for b in body), "}"]
    return sorted(need), lines


class RuleSet:
    """An account's rules (home) or the global ones (root_path)."""

    def __init__(self, home: Path | None = None, root_path: Path | None = None):
        self.home, self.root_path = home, root_path

    @property
    def _global(self) -> Path:
        return Path(self.root_path) / "sieve" / "before.d" / GLOBAL_SCRIPT

    def _text(self) -> str:
        if self.home is not None:
            from . import scripts
            active = scripts.active_script(self.home)
            return active[1] if active else ""
        from .. import nofollow
        try:
            return nofollow.read_text(self._global)
        except FileNotFoundError:
            return ""

    def list(self) -> list[dict]:
        lines = section_lines(self._text(), SECTION) or []
        try:
            rules = [json.loads(line[len(_RULE):]) for line in lines if line.startswith(_RULE)]
            for rule in rules:
                describe(rule)                   # every field there, of the right kind
        except (ValueError, TypeError, KeyError, AttributeError):
            raise InvalidInput("the rules section of the Sieve script was edited by hand and cannot be read; "
                               "remove the section or write the rules again") from None
        return rules

    def _write(self, rules: list[dict]) -> None:
        requires, body = _sieve(rules)
        body = body if rules else None
        if self.home is not None:
            write_section(self.home, SECTION, requires, body)
            return
        new = edited(self._text(), SECTION, requires, body)
        Script(new)                                  # never write a script that does not compile
        self._global.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self._global, new.encode("utf-8"), mode=0o644)

    def add(self, conditions: list[str], actions: list[str], any_: bool = False) -> int:
        if not conditions or not actions:
            raise InvalidInput("a rule needs at least one --if and one --then")
        rule = {"if": [parse_condition(c) for c in conditions], "any": any_,
                "then": [parse_action(a) for a in actions]}
        rules = self.list() + [rule]
        self._write(rules)
        return len(rules)

    def remove(self, number: int) -> dict:
        rules = self.list()
        if not 1 <= number <= len(rules):
            raise InvalidInput(f"no rule {number}; see 'mailctl rule list' ({len(rules)} rule(s))")
        gone = rules.pop(number - 1)
        self._write(rules)
        return gone


def describe(rule: dict) -> str:
    conds = [f"{c['field']} {'not ' if c['not'] else ''}{c['op']} {c['value']!r}" for c in rule["if"]]
    acts = [(f"{a['do']} {a['arg']!r}" + (f" {a['value']!r}" if "value" in a else "")).strip() if a["arg"] else a["do"]
            for a in rule["then"]]
    return f"if {(' or ' if rule['any'] else ' and ').join(conds)}: {', '.join(acts)}"

