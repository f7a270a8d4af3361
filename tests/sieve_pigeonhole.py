"""Running Pigeonhole's sieve-test (Debian dovecot-sieve) on a corpus case, and putting
its actions and ours in one comparable form (tests/test_sieve_differential.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from engine.sieve.interp import Script
from engine.sieve.lexer import SieveError
from engine.sieve.message import SieveMessage

CORPUS = Path(__file__).parent / "sieve_corpus"
DEFAULT_FROM, DEFAULT_TO = "alice@example.com", "bob+work@example.org"
SIEVE_TEST = shutil.which("sieve-test")


@dataclass
class Case:
    name: str
    script: str
    message: str = "plain.eml"
    sender: str = DEFAULT_FROM
    recipient: str = DEFAULT_TO


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for line in (CORPUS / "cases.txt").read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("=== "):
            fields = [f.strip() for f in line[4:].split("|")]
            case = Case(fields[0], "")
            if len(fields) > 1:
                case.message = fields[1]
            if len(fields) > 2:
                case.sender = "" if fields[2] == "<>" else fields[2]
            if len(fields) > 3:
                case.recipient = fields[3]
            cases.append(case)
        elif cases:
            cases[-1].script += line
    return cases


def dovecot_config(tmp: Path) -> Path:
    """A private config: sieve-test reads nothing of the machine's Dovecot. As root it
    must drop to an unprivileged uid (Dovecot refuses uid 0), so the files are world-readable."""
    uid, gid = (65534, 65534) if os.getuid() == 0 else (os.getuid(), os.getgid())
    for kind in ("personal", "global"):      # the scripts include finds (RFC 6609)
        target = tmp / kind
        shutil.copytree(CORPUS / kind, target, dirs_exist_ok=True)
        os.chmod(target, 0o777)
        for f in target.iterdir():
            os.chmod(f, 0o644)
    conf = tmp / "dovecot.conf"
    conf.write_text(f"protocols =\nmail_uid = {uid}\nmail_gid = {gid}\nfirst_valid_uid = 1\n"
                    f"mail_home = {tmp}/home\nmail_location = maildir:{tmp}/home/Maildir\n"
                    "log_path = /dev/null\nplugin {\n  sieve_extensions = +vacation-seconds +spamtest +spamtestplus +virustest +editheader\n"
                    f"  sieve = file:{tmp}/personal\n  sieve_global = {tmp}/global\n"
                    "  sieve_max_redirects = 4\n  sieve_max_actions = 32\n"
                    # spamtest as mailctl's X-Spam-Score feeds it (engine/sieve/message.py)
                    "  sieve_spamtest_status_type = score\n  sieve_spamtest_status_header = X-Spam-Score\n"
                    "  sieve_spamtest_max_value = 10\n"
                    "  sieve_virustest_status_type = text\n"
                    "  sieve_virustest_status_header = X-Virus-Scanned: mailctl \\((clamd)\\)\n"
                    "  sieve_virustest_text_value1 = clamd\n}\n")
    os.chmod(tmp, 0o777)
    os.chmod(conf, 0o644)
    return conf


def pigeonhole(case: Case, tmp: Path, conf: Path) -> list[str]:
    script = tmp / f"{case.name}.sieve"
    script.write_text(case.script, encoding="utf-8")
    os.chmod(script, 0o666)
    args = [SIEVE_TEST, "-c", str(conf)]
    args += ["-f", case.sender or "<>"] if case.sender else ["-f", "<>"]
    message = tmp / case.message
    if not message.exists():           # readable by the uid sieve-test drops to
        shutil.copyfile(CORPUS / case.message, message)
        os.chmod(message, 0o644)
    args += ["-a", case.recipient, "-r", case.recipient, str(script), str(message)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30, env={**os.environ, "TZ": "UTC"})
    if "failed to compile" in proc.stderr or proc.returncode == 89 and "compile" in proc.stderr:
        return ["error"]
    if not proc.stdout.strip() and "resolved with successful implicit keep" in proc.stderr:
        return ["keep"]                # a runtime error or limit: the message in INBOX
    return normalize_pigeonhole(proc.stdout)


def normalize_pigeonhole(out: str) -> list[str]:
    actions: list[str] = []
    vacation: dict | None = None
    body: list[str] | None = None
    notify: dict | None = None
    for line in out.splitlines():
        s = line.strip()
        if notify is not None:
            if s.startswith("=> "):
                key, _, value = s[3:].partition(":")
                notify[key.strip()] = value.strip()
                continue
            if s.startswith("+ To: ") or s.startswith("+ Cc: "):
                notify.setdefault("to", []).append(s[6:].strip())
                continue
            actions.append(notify_form(notify))
            notify = None
        if body is not None:
            if line == "END MESSAGE":
                vacation["reason"] = printable("\n".join(body)).strip()
                actions.append(vacation_form(vacation))
                vacation, body = None, None
            else:
                body.append(line)
            continue
        if vacation is not None:
            if s.startswith("=> "):
                key, _, value = s[3:].partition(":")
                vacation[key.strip()] = value.strip()
            elif line == "START MESSAGE":
                body = []
            continue
        if s == "* send vacation message:":
            vacation = {}
        elif s.startswith("* send notification with method 'mailto:'"):
            notify = {}
        elif s.startswith("* store message in folder: "):
            folder = s.split(": ", 1)[1]
            actions.append("keep" if folder == "INBOX" else f"fileinto {folder}")
        elif s.startswith("+ add IMAP flags: ") and actions:
            actions[-1] += " flags " + " ".join(sorted(s.split(": ", 1)[1].lower().split()))
        elif s.startswith("* redirect message to: "):
            actions.append("redirect " + s.split(": ", 1)[1].strip("<>"))
        elif s == "* discard":
            actions.append("discard")
        elif s.startswith("* reject message with reason:"):
            actions.append(("reject " + s.split(":", 1)[1].strip()).strip())     # line ends printed as '?'
        elif s.startswith("* store message in folder: "):
            pass
        elif s.startswith("* ") and "keep" in s:
            actions.append("keep")
    if notify is not None:
        actions.append(notify_form(notify))
    return sorted(set(actions))


def ours(case: Case) -> list[str]:
    try:
        script = Script(case.script).link(corpus_script)
    except SieveError:
        return ["error"]
    raw = (CORPUS / case.message).read_bytes()
    result = script.run(SieveMessage(raw, case.sender, case.recipient), load=corpus_script)
    actions: list[str] = []

    def flags(fl) -> str:
        return " flags " + " ".join(sorted(f.lower() for f in fl)) if fl else ""

    for a in result.actions:
        if a.kind == "keep" or (a.kind == "fileinto" and a.arg == "INBOX"):
            actions.append("keep" + flags(a.flags))
        elif a.kind == "fileinto":
            actions.append(f"fileinto {printable(a.arg)}" + flags(a.flags))
        elif a.kind == "redirect":
            actions.append(f"redirect {a.arg}")
        elif a.kind == "discard":
            actions.append("discard")
        elif a.kind == "vacation":
            d = a.details
            actions.append(vacation_form({"seconds": str(d["seconds"]), "subject": d.get("subject", ""),
                                          "from": d.get("from", ""),
                                          "reason": printable(a.arg.replace("\r\n", "\n")).strip()}))
        elif a.kind == "notify":
            d = a.details
            actions.append(notify_form({"importance": d["importance"], "subject": d["subject"], "from": d["from"],
                                        "to": d["to"] + d["cc"]}))
        elif a.kind in ("reject", "ereject"):
            actions.append(("reject " + printable(a.arg).strip()).strip())
    if result.implicit_keep:
        actions.append("keep" + flags(result.keep_flags))
    return sorted(set(actions))


def corpus_script(location: str, name: str):
    """What an include finds in the corpus's personal/ and global/ scripts."""
    path = CORPUS / location / f"{name}.sieve"
    return Script(path.read_text(encoding="utf-8")) if path.is_file() else None


def printable(text: str) -> str:
    """As sieve-test prints a string: control characters as '?'."""
    return "".join("?" if ord(c) < 32 else c for c in text)


def notify_form(n: dict) -> str:
    """A notify action in one comparable line."""
    return f"notify importance={n.get('importance', '2')} subject={n.get('subject', '')!r} " \
           f"from={n.get('from', '')!r} to={sorted(a.lower() for a in n.get('to', []))}"


def vacation_form(v: dict) -> str:
    """A vacation action in one comparable line (the handle left out: Pigeonhole prints a
    default one made of the other fields)."""
    return f"vacation seconds={v.get('seconds')} subject={v.get('subject', '')!r} from={v.get('from', '')!r} " \
           f"reason={v.get('reason', '')!r}"
