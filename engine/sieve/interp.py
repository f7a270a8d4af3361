"""Running a checked Sieve script (engine/sieve/check.py) on one message for one mailbox.

Everything a script may spend is bounded (actions.MAX_*): a script error or a limit
gives actions.failed(), which files the message into INBOX; mail is never lost."""
from __future__ import annotations

import dataclasses
import re
import urllib.parse

from . import actions as act
from . import editheader, mailto
from .check import Node, check, valid_address
from .lexer import SieveError
from .match import Budget, count_matches, matches
from .message import SieveMessage, address_part
from .parser import parse

MAX_VARIABLES = 128
VACATION_DEFAULT_DAYS = 7
VACATION_MIN_SECONDS = 86400           # Pigeonhole's sieve_vacation_min_period (1d)
VACATION_MAX_SECONDS = 0               # sieve_vacation_max_period: 0, no maximum (Pigeonhole's default)
MAX_VARIABLE_SIZE = 4096


class _Stop(Exception):
    pass


class _Return(Exception):
    """RFC 6609 return: the end of the included script running now."""


MAX_INCLUDE_DEPTH = 10                 # Pigeonhole's sieve_include_max_nesting_depth
MAX_INCLUDES = 255                     # sieve_include_max_includes


class Script:
    """A parsed and checked script, reusable for many messages."""

    def __init__(self, text: str):
        self.nodes, self.required = check(parse(text))

    def link(self, load, chain: tuple = ()) -> "Script":
        """Resolve the includes as Pigeonhole does when it compiles a script: each one not
        :optional must name a script that compiles, none may include itself (directly or
        through others), and nesting stays within MAX_INCLUDE_DEPTH. SieveError otherwise."""
        for node in _includes(self.nodes):
            where = ("global" if "global" in node.opts else "personal", node.pos[0])
            if where in chain:
                raise SieveError(node.line, f"include: {where[1]!r} includes itself")
            if len(chain) >= MAX_INCLUDE_DEPTH:
                raise SieveError(node.line, "include: nested too deeply")
            try:
                script = load(*where)
                if script is not None:
                    script.link(load, (*chain, where))
            except SieveError as e:
                raise SieveError(node.line, f"include {where[1]!r}: {e}") from None
            if script is None and "optional" not in node.opts:
                raise SieveError(node.line, f"include: no {where[0]} script {where[1]!r}")
        return self

    def run(self, message: SieveMessage, mailbox_exists=lambda name: name.upper() == "INBOX",
            load=None) -> act.Result:
        """load(location, name): the Script an include names ("personal" or "global"), or
        None when there is none; without it every include finds nothing."""
        run = _Run(self, message, mailbox_exists, load)
        try:
            run.block(self.nodes)
        except (_Stop, _Return):       # return in the main script is stop (RFC 6609 §3.3)
            pass
        except SieveError as e:
            return act.failed(str(e))
        run.result.keep_flags = tuple(run.flags)
        return run.result


class _Run:
    def __init__(self, script: Script, message: SieveMessage, mailbox_exists, load=None):
        self.script, self.msg, self.mailbox_exists, self.load = script, message, mailbox_exists, load
        self.globals: dict[str, str] = {}          # include's global variables, shared by every script
        self.global_names: set[str] = set()         # those the running script declared global
        self.including: list[tuple[str, str]] = []  # the scripts being included, outermost first
        self.included: set[tuple[str, str]] = set()
        self.includes = 0
        self.budget = Budget(act.MAX_STEPS)
        self.result = act.Result()
        self.flags: list[str] = []
        self.vars: dict[str, str] = {}
        self.duplicates: dict[tuple[str, str], bool] = {}
        self.match_vars: list[str] = []
        self.variables = "variables" in script.required

    # --- strings -------------------------------------------------------------------
    def expand(self, s: str) -> str:
        if "encoded-character" in self.script.required:
            s = _decode_encoded(s)
        if not self.variables or "${" not in s:
            return s
        def sub(m):
            name = m.group(1).lower()
            if name.isdigit():
                i = int(name)
                return self.match_vars[i] if i < len(self.match_vars) else ""
            return self.get_var(name)
        return re.sub(r"\$\{((?:global\.)?[A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}", sub, s, flags=re.IGNORECASE)

    def _scope(self, name: str) -> tuple[dict, str]:
        """Where a variable lives: include's globals (global.NAME, or declared global) or the script's own."""
        name = name.lower()
        if name.startswith("global."):
            return self.globals, name[7:]
        return (self.globals if name in self.global_names else self.vars), name

    def get_var(self, name: str) -> str:
        where, key = self._scope(name)
        return where.get(key, "")

    def put_var(self, name: str, value: str, line: int = 0) -> None:
        where, key = self._scope(name)
        if key not in where and len(where) >= MAX_VARIABLES:
            raise SieveError(line, "too many variables")
        where[key] = value[:MAX_VARIABLE_SIZE]

    def expand_list(self, items: list[str]) -> list[str]:
        return [self.expand(s) for s in items]

    # --- commands ------------------------------------------------------------------
    def block(self, nodes: list[Node]) -> None:
        taken = False
        for node in nodes:
            self.budget.spend()
            name = node.name
            if name in ("if", "elsif", "else"):
                if name == "if":
                    taken = False
                if taken:
                    continue
                if name == "else" or self.test(node.tests[0]):
                    taken = True
                    self.block(node.block)
                continue
            getattr(self, "cmd_" + name)(node)

    def add(self, action: act.Action) -> None:
        kinds = {a.kind for a in self.result.actions} | {action.kind}
        if kinds & {"reject", "ereject"} and kinds & {"keep", "fileinto", "redirect", "vacation"}:
            # RFC 5429 §2.1: reject SHOULD be refused beside keep, fileinto, redirect (Pigeonhole does)
            raise SieveError(0, "reject conflicts with keep/fileinto")
        if len(self.result.actions) >= act.MAX_ACTIONS:
            raise SieveError(0, f"more than {act.MAX_ACTIONS} actions")
        self.result.actions.append(action)

    def _flags_of(self, node: Node) -> tuple[str, ...]:
        if "flags" in node.opts:
            return tuple(_flag_words(self.expand_list(node.opts["flags"])))
        return tuple(self.flags)

    def cmd_stop(self, node: Node) -> None:
        raise _Stop()

    def cmd_keep(self, node: Node) -> None:
        self.add(act.Action("keep", "INBOX", self._flags_of(node)))
        self.result.implicit_keep = False

    def cmd_discard(self, node: Node) -> None:
        self.add(act.Action("discard"))
        self.result.implicit_keep = False

    def cmd_fileinto(self, node: Node) -> None:
        folder = self.expand(node.pos[0])
        if not folder or "\0" in folder:
            raise SieveError(node.line, "fileinto: bad folder name")
        self.add(act.Action("fileinto", folder, self._flags_of(node), "create" in node.opts))
        if "copy" not in node.opts:
            self.result.implicit_keep = False

    def cmd_redirect(self, node: Node) -> None:
        address = valid_address(self.expand(node.pos[0]), node.line)
        if address not in self.result.redirects():
            if len(self.result.redirects()) >= act.MAX_REDIRECTS:
                raise SieveError(node.line, f"more than {act.MAX_REDIRECTS} redirects")
            self.add(act.Action("redirect", address))
        if "copy" not in node.opts:
            self.result.implicit_keep = False

    def cmd_reject(self, node: Node) -> None:
        if any(a.kind in ("reject", "ereject") for a in self.result.actions):
            raise SieveError(node.line, "reject: more than one reject")
        self.add(act.Action(node.name, self.expand(node.pos[0])))
        self.result.implicit_keep = False

    cmd_ereject = cmd_reject

    def cmd_vacation(self, node: Node) -> None:
        """RFC 5230: the action only; whether a reply goes out (and sending it) is decided
        when the result is carried out (engine/sieve/vacation.py), as Pigeonhole does."""
        if any(a.kind == "vacation" for a in self.result.actions):
            raise SieveError(node.line, "duplicate vacation action")
        o = node.opts
        seconds = o["seconds"] if "seconds" in o else o.get("days", VACATION_DEFAULT_DAYS) * 86400
        seconds = max(seconds, VACATION_MIN_SECONDS)
        if VACATION_MAX_SECONDS:
            seconds = min(seconds, VACATION_MAX_SECONDS)
        details = {"seconds": seconds, "mime": "mime" in o}
        for key in ("subject", "from", "handle"):
            if key in o:
                details[key] = self.expand(o[key])
        if "addresses" in o:
            details["addresses"] = self.expand_list(o["addresses"])
        self.add(act.Action("vacation", self.expand(node.pos[0]), details=details))

    def cmd_include(self, node: Node) -> None:
        """RFC 6609: run another script here, with its own variables (but the globals)."""
        where = ("global" if "global" in node.opts else "personal", node.pos[0])
        if "once" in node.opts and where in self.included:
            return
        if where in self.including:
            raise SieveError(node.line, f"include: {where[1]!r} includes itself")
        self.includes += 1
        if len(self.including) >= MAX_INCLUDE_DEPTH or self.includes > MAX_INCLUDES:
            raise SieveError(node.line, "include: too many or too deeply nested includes")
        try:
            script = self.load(*where) if self.load is not None else None
        except SieveError as e:
            raise SieveError(node.line, f"include {where[1]!r}: {e}") from None
        if script is None:
            if "optional" in node.opts:
                return
            raise SieveError(node.line, f"include: no {where[0]} script {where[1]!r}")
        self.included.add(where)
        saved = (self.script, self.vars, self.global_names, self.match_vars, self.variables)
        self.script, self.vars, self.global_names, self.match_vars = script, {}, set(), []
        self.variables = "variables" in script.required
        self.including.append(where)
        try:
            self.block(script.nodes)
        except _Return:
            pass
        finally:
            self.including.pop()
            self.script, self.vars, self.global_names, self.match_vars, self.variables = saved

    def cmd_return(self, node: Node) -> None:
        raise _Return()

    def cmd_global(self, node: Node) -> None:
        self.global_names.update(name.lower() for name in node.pos[0])

    def cmd_addheader(self, node: Node) -> None:
        name = self.expand(node.pos[0])
        if not editheader.FIELD_NAME.match(name):
            raise SieveError(node.line, f"addheader: invalid field name {name!r}")
        self._edited(editheader.add(self.msg.raw, name, self.expand(node.pos[1]), "last" in node.opts))

    def cmd_deleteheader(self, node: Node) -> None:
        name = self.expand(node.pos[0])
        if not editheader.FIELD_NAME.match(name):
            raise SieveError(node.line, f"deleteheader: invalid field name {name!r}")
        keys = self.expand_list(node.pos[1]) if len(node.pos) > 1 else None
        opts = node.opts

        def keep(value: str) -> bool:
            return keys is not None and not any(matches(value, k, opts, self.budget) is not None for k in keys)
        self._edited(editheader.delete(self.msg.raw, name, keep, opts.get("index"), "last" in opts))

    def _edited(self, raw: bytes) -> None:
        """Later tests see the edited message, and its copy is stored so (result.raw)."""
        if raw is not self.msg.raw:
            self.msg = dataclasses.replace(self.msg, raw=raw)
            self.result.raw = raw

    def cmd_notify(self, node: Node) -> None:
        """RFC 5435 with mailto (RFC 5436): the action; engine/accept/autoreply.py sends it."""
        method = self.expand(node.pos[0])
        target = mailto.parse(method, node.line)
        key = ("notify", tuple(sorted(a.lower() for a in target.to + target.cc)))
        if any(a.kind == "notify" and a.details.get("key") == key for a in self.result.actions):
            return                           # the same method and recipients: once (as Pigeonhole)
        o = node.opts
        details = {"key": key, "importance": o.get("importance", "2"), "to": target.to, "cc": target.cc,
                   "subject": self.expand(o["message"]) if "message" in o else target.subject,
                   "body": target.body, "from": self.expand(o["from"]) if "from" in o else ""}
        self.add(act.Action("notify", method, details=details))

    def _flag_target(self, node: Node) -> tuple[str | None, list[str]]:
        if len(node.pos) == 2:
            return node.pos[0][0].lower(), _flag_words(self.expand_list(node.pos[1]))
        return None, _flag_words(self.expand_list(node.pos[0]))

    def _set_flags(self, var: str | None, flags: list[str]) -> None:
        if var is None:
            self.flags = flags
        else:
            self.put_var(var, " ".join(flags))

    def _get_flags(self, var: str | None) -> list[str]:
        return self.flags if var is None else _flag_words([self.get_var(var)])

    def cmd_setflag(self, node: Node) -> None:
        var, flags = self._flag_target(node)
        self._set_flags(var, _unique(flags))

    def cmd_addflag(self, node: Node) -> None:
        var, flags = self._flag_target(node)
        self._set_flags(var, _unique(self._get_flags(var) + flags))

    def cmd_removeflag(self, node: Node) -> None:
        var, flags = self._flag_target(node)
        gone = {f.lower() for f in flags}
        self._set_flags(var, [f for f in self._get_flags(var) if f.lower() not in gone])

    def cmd_set(self, node: Node) -> None:
        name = node.pos[0].lower()
        if not re.fullmatch(r"(global\.)?[a-z_][a-z0-9_]*", name):
            raise SieveError(node.line, f"set: bad variable name {name!r}")
        value = self.expand(node.pos[1])
        o = node.opts
        if "lower" in o:
            value = value.lower()
        if "upper" in o:
            value = value.upper()
        if "lowerfirst" in o:
            value = value[:1].lower() + value[1:]
        if "upperfirst" in o:
            value = value[:1].upper() + value[1:]
        if "encodeurl" in o:                  # RFC 5435 §6: for a URI
            value = urllib.parse.quote(value, safe="-._~")
        if "quotewildcard" in o:
            value = re.sub(r"([*?\\])", r"\\\1", value)
        if "length" in o:
            value = str(len(value))
        self.put_var(name, value, node.line)

    # --- tests ---------------------------------------------------------------------
    def test(self, node: Node) -> bool:
        self.budget.spend()
        return getattr(self, "test_" + node.name)(node)

    def test_true(self, node):
        return True

    def test_false(self, node):
        return False

    def test_not(self, node):
        return not self.test(node.tests[0])

    def test_allof(self, node):
        return all(self.test(t) for t in node.tests)

    def test_anyof(self, node):
        return any(self.test(t) for t in node.tests)

    def test_exists(self, node):
        return all(self.msg.headers(h) for h in self.expand_list(node.pos[0]))

    def test_size(self, node):
        if ("over" in node.opts) == ("under" in node.opts):
            raise SieveError(node.line, "size needs :over or :under")
        limit = node.pos[0]
        return self.msg.size > limit if "over" in node.opts else self.msg.size < limit

    def compare(self, node: Node, values: list[str], keys: list[str]) -> bool:
        if "count" in node.opts:
            return count_matches(len(values), keys, node.opts)
        for value in values:
            for key in keys:
                found = matches(value, key, node.opts, self.budget)
                if found is not None:
                    if self.variables and ("matches" in node.opts or "regex" in node.opts):
                        self.match_vars = found
                    return True
        return False

    def test_header(self, node):
        values = [_indexed(node, self.msg.headers(h)) for h in self.expand_list(node.pos[0])]
        return self.compare(node, [v for vs in values for v in vs], self.expand_list(node.pos[1]))

    def test_date(self, node):
        from . import dates
        zone = self.expand(node.opts["zone"]) if isinstance(node.opts.get("zone"), str) else None
        datepart = self.expand(node.pos[1]).lower()
        field = self.expand(node.pos[0])
        values = []
        for raw in _indexed(node, self.msg.headers(field)):
            when = dates.parse_header_date(raw, field)
            if when is not None:
                try:
                    value = dates.part(dates.in_zone(when, zone, "originalzone" in node.opts), datepart)
                except SieveError:            # an invalid :zone: the local zone, as Pigeonhole
                    value = dates.part(dates.in_zone(when, None, False), datepart)
                if value is not None:
                    values.append(value)
        return self.compare(node, values, self.expand_list(node.pos[2]))

    def test_currentdate(self, node):
        import datetime as dt

        from . import dates
        zone = self.expand(node.opts["zone"]) if "zone" in node.opts else None
        try:
            when = dates.in_zone(dt.datetime.now(dt.timezone.utc), zone, False)
        except SieveError:
            return False
        value = dates.part(when, self.expand(node.pos[0]).lower())
        return value is not None and self.compare(node, [value], self.expand_list(node.pos[1]))

    def _part(self, node) -> str:
        for p in ("localpart", "domain", "user", "detail", "all"):
            if p in node.opts:
                return p
        return "all"

    def test_address(self, node):
        part = self._part(node)
        values = [address_part(a, part) for h in self.expand_list(node.pos[0])
                  for a in _indexed(node, self.msg.addresses(h), fields=self.msg.headers(h))]
        return self.compare(node, [v for v in values if v is not None], self.expand_list(node.pos[1]))

    def test_envelope(self, node):
        part = self._part(node)
        values = []
        for which in self.expand_list(node.pos[0]):
            for a in self.msg.envelope(which.lower()):
                v = address_part(a, part) if a else ("" if part == "all" else None)
                if v is not None:
                    values.append(v)
        return self.compare(node, values, self.expand_list(node.pos[1]))

    def test_body(self, node):
        transform = "raw" if "raw" in node.opts else "text" if "text" in node.opts else "content" if "content" in node.opts else "text"
        types = node.opts.get("content") if transform == "content" else None
        texts = self.msg.body_text(transform, types)
        self.budget.spend(sum(len(t) for t in texts) // 4096)
        opts = node.opts
        return any(matches(t, k, opts, self.budget) is not None for t in texts for k in self.expand_list(node.pos[0]))

    def test_string(self, node):
        values = [v for v in self.expand_list(node.pos[0])]
        if "count" in node.opts:
            values = [v for v in values if v != ""]
        return self.compare(node, values, self.expand_list(node.pos[1]))

    def test_hasflag(self, node):
        if len(node.pos) == 2:
            flags = _flag_words([self.get_var(v) for v in node.pos[0]])
            keys = self.expand_list(node.pos[1])
        else:
            flags, keys = self.flags, self.expand_list(node.pos[0])
        return self.compare(node, flags, keys)

    def test_spamtest(self, node):
        value = self.msg.spamtest("percent" in node.opts)
        return self.compare(node, [value], [self.expand(node.pos[0])])

    def test_virustest(self, node):
        return self.compare(node, [self.msg.virustest()], [self.expand(node.pos[0])])

    def test_environment(self, node):
        """RFC 5183: an item this run knows (else false, as for an unknown item)."""
        value = self.msg.environment_item(self.expand(node.pos[0]).lower())
        return value is not None and self.compare(node, [value], self.expand_list(node.pos[1]))

    def test_duplicate(self, node):
        """RFC 7352: seen before (within its period) by this mailbox? No id: false."""
        o = node.opts
        if "uniqueid" in o:
            unique = self.expand(o["uniqueid"])
        else:
            values = self.msg.headers(self.expand(o.get("header", "message-id")))
            unique = values[0].strip() if values else ""
        store = self.msg.duplicates
        if not unique or store is None:
            return False
        key = (self.expand(o.get("handle", "")), unique)
        if key not in self.duplicates:         # asked again in this run: the same answer
            self.duplicates[key] = store.seen(*key, o.get("seconds"), "last" in o)
        return self.duplicates[key]

    def test_valid_notify_method(self, node):
        try:
            for uri in self.expand_list(node.pos[0]):
                mailto.parse(uri)
        except SieveError:
            return False
        return True

    def test_notify_method_capability(self, node):
        """RFC 5436 §2.5: mailto's only capability, "online", is "maybe"."""
        try:
            mailto.parse(self.expand(node.pos[0]))
        except SieveError:
            return False
        if self.expand(node.pos[1]).lower() != "online":
            return False
        return self.compare(node, ["maybe"], self.expand_list(node.pos[2]))

    def test_mailboxexists(self, node):
        return all(self.mailbox_exists(name) for name in self.expand_list(node.pos[0]))


def _includes(nodes: list[Node]):
    for node in nodes:
        if node.name == "include":
            yield node
        if node.block:
            yield from _includes(node.block)


def _indexed(node: Node, values: list, fields: list | None = None) -> list:
    """RFC 5260 §6 :index n [:last]: only the n-th field (from the end with :last)."""
    n = node.opts.get("index")
    if n is None:
        return values
    if fields is not None:            # address: the n-th field's addresses
        chosen = _indexed(node, fields)
        from email.utils import getaddresses
        return [a for _, a in getaddresses(chosen) if a]
    i = len(values) - n if "last" in node.opts else n - 1
    return [values[i]] if 0 <= i < len(values) else []


def _flag_words(items: list[str]) -> list[str]:
    return [w for s in items for w in s.split()]


def _unique(flags: list[str]) -> list[str]:
    seen, out = set(), []
    for f in flags:
        if f.lower() not in seen:
            seen.add(f.lower())
            out.append(f)
    return out


def _decode_encoded(s: str) -> str:
    """encoded-character (RFC 5228 §2.4.2.4): ${hex:41 42} and ${unicode:263a}."""
    def sub(m):
        kind, data = m.group(1).lower(), m.group(2).split()
        try:
            if kind == "hex":
                return bytes(int(h, 16) for h in data).decode("utf-8")
            return "".join(chr(int(h, 16)) for h in data)
        except (ValueError, UnicodeDecodeError, OverflowError):
            return m.group(0)
    return re.sub(r"\$\{(hex|unicode):\s*([0-9A-Fa-f\s]*)\}", sub, s, flags=re.IGNORECASE)
