"""Hostile input to IMAP (issue 19), against a real `mailctl serve` with real clients:
mail in charsets Python cannot decode, LIST patterns that backtrack, numbers too long
for int(), dates out of range, arguments to commands that take none, message/rfc822
nested past the limit. Each answer is a protocol reply (BAD, NO or OK), the session goes
on where it can, the log holds no traceback, and other sessions are never held up."""
from __future__ import annotations

import imaplib
import random
import re
import smtplib
import socket
import threading
import time

import imapclient
import pytest

from engine.maildir import Maildir
from helpers_mail import PASSWORD
from engine.imap import listing
from helpers_server import make_root, running_server, serve_process
from helpers_raw import Raw

ALICE = "alice@example.com"
CAROL = "carol@example.com"
HUGE = b"1" + b"9" * 5000            # past Python's 4,300-digit int() limit
GREETING_LIMIT_S = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("hostile"), accounts={ALICE: PASSWORD, CAROL: PASSWORD},
                     settings={"auth.allow_plaintext": True, "auth.failure_delay_s": 0,
                               "auth.ban_after_failures": 0, "server.processes": 1})
    with serve_process(root) as proc:
        proc.root = root
        yield proc


@pytest.fixture(autouse=True)
def no_traceback_in_log(server):
    log = server.root.log_dir / "mailctl.log"
    start = log.stat().st_size if log.exists() else 0
    yield
    time.sleep(0.3)                   # the log's writer thread
    with open(log, "rb") as f:
        f.seek(start)
        added = f.read().decode("utf-8", "replace")
    assert "Traceback" not in added and "failed" not in added.replace("failed login", ""), added[-3000:]


def login(server, address: str = ALICE) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=60)
    c.login(address, PASSWORD)
    return c


def raw_session(server, address: str = ALICE) -> Raw:
    r = Raw(server.ports["imap"])
    r.login(address)
    return r


def greeting_after(port: int) -> float:
    """Seconds from connecting to the first line of the greeting."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.recv(100)
    return time.monotonic() - started


# -- 1. charsets -----------------------------------------------------------------------

UNUSABLE = ["idna", "undefined", "punycode", "utf-8\0x", "utf-7", "base64", "rot13", "x-no-such-charset",
            "a" * 300]


def test_mail_in_unusable_charsets_leaves_search_and_fetch_working(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        for i, charset in enumerate(UNUSABLE):
            text = (f"From: x@example.org\r\nTo: {CAROL}\r\nSubject: =?{charset}?q?subject{i}?=\r\n"
                    f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"{charset}\"\r\n\r\n"
                    f"needle{i} in a haystack\r\n")
            s.sendmail("x@example.org", [CAROL], text.encode("latin-1"))
    c = login(server, CAROL)
    count = int(c.select("INBOX")[1][0])
    assert count == len(UNUSABLE)
    everything = " ".join(str(n) for n in range(1, count + 1))
    assert c.search(None, "BODY", "haystack") == ("OK", [everything.encode()])
    assert c.search(None, "TEXT", "haystack") == ("OK", [everything.encode()])
    assert c.search(None, "HEADER", "Subject", "subject") == ("OK", [everything.encode()])
    for i in range(count):
        assert c.search(None, "BODY", f"needle{i}") == ("OK", [str(i + 1).encode()])
        assert c.search(None, "TEXT", f"needle{i}") == ("OK", [str(i + 1).encode()])
        assert c.search(None, "SUBJECT", f"subject{i}") == ("OK", [str(i + 1).encode()])
    typ, data = c.fetch("1:*", "(ENVELOPE BODYSTRUCTURE BODY.PEEK[TEXT])")
    assert typ == "OK" and sum(isinstance(d, tuple) and b"BODY[TEXT]" in d[0] for d in data) == count
    # a charset name with a NUL: no NUL in the strings of ENVELOPE or BODYSTRUCTURE (CHAR8)
    typ, data = c.fetch("1:*", "(ENVELOPE BODYSTRUCTURE)")
    assert typ == "OK" and not any(b"\0" in part for d in data for part in (d if isinstance(d, tuple) else (d,)))
    c.logout()


# -- 2. LIST patterns, and heavy commands beside other sessions -------------------------

def test_list_pattern_with_many_wildcards_is_answered_at_once(server):
    c = login(server)
    c.create("a" * 30)
    started = time.monotonic()
    assert c.list('""', "%*%*%*%*%*%*x") == ("OK", [None])
    c.subscribe("a" * 30)
    assert c.lsub('""', "%*%*%*%*%*%*x") == ("OK", [None])
    assert time.monotonic() - started < 5          # was 37 s for each
    typ, data = c.list('""', "%*%*a")
    assert typ == "OK" and any(b'"' + b"a" * 30 + b'"' in line or line.endswith(b"a" * 30) for line in data)
    typ, data = c.list('""', "inBOX*")               # INBOX is case-insensitive, also in a pattern
    assert typ == "OK" and data[0].endswith(b"INBOX")
    c.logout()


def test_list_pattern_matches_what_a_regex_would_match():
    """The automaton against the regex it replaced, on small random patterns and names
    (where backtracking costs nothing), INBOX's case-insensitivity included."""
    rng = random.Random(19)
    for _ in range(20000):
        pattern = "".join(rng.choice("ab/*%") for _ in range(rng.randint(0, 7)))
        pattern = ("inBox" if rng.random() < 0.2 else "") + pattern
        name = ("INBOX" if rng.random() < 0.3 else "") + "".join(rng.choice("ab/") for _ in range(rng.randint(0, 7)))
        regex = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in pattern)
        if pattern[:5].upper() == "INBOX":
            regex = "(?i:" + regex[:5] + ")" + regex[5:]
        expected = re.fullmatch(regex, name, re.DOTALL) is not None
        assert listing.Pattern(pattern).matches(name) == expected, (pattern, name)


def _fill_big_folder(root, count: int) -> None:
    """A folder where SEARCH TEXT must decode every message (base64, no cheap proof)."""
    md = Maildir.for_account(root, "example.com", "alice")
    body = ("QUFB" * 19 + "\n") * 500      # 38 KB of base64 each
    for i in range(count):
        md.deliver((f"From: x@example.org\nSubject: big {i}\nMIME-Version: 1.0\n"
                    f"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n{body}").encode(), "Big")


def _text_search_keys(count: int) -> list[str]:
    """An OR of `count` TEXT keys, none found: each decodes every message again."""
    keys = ["TEXT", f"nowhere-{count - 1}"]
    for i in range(count - 1):
        keys = ["OR", "TEXT", f"nowhere-{i}"] + keys
    return keys


def test_heavy_list_and_search_do_not_hold_up_other_sessions(server):
    c = login(server)
    c.create("Big")
    _fill_big_folder(server.root, 1000)
    c.create("b" * 30)
    c.select("Big")
    results: dict[str, object] = {}

    def heavy():
        started = time.monotonic()
        c.list('""', "%*%*%*%*%*%*%*x")
        results["search"] = c.search(None, *_text_search_keys(8))
        # no content, but every key for every message: 2000 keys x 1000 messages
        results["flags"] = c.search(None, *["UNSEEN"] * 2000)
        results["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=heavy)
    worker.start()
    latencies = []
    time.sleep(0.1)
    while worker.is_alive():
        latencies.append((greeting_after(server.ports["imap"]), greeting_after(server.ports["smtp"])))
        time.sleep(0.1)
    worker.join()
    assert results["search"] == ("OK", [b""])
    assert results["flags"][0] == "OK" and len(results["flags"][1][0].split()) == 1000
    assert latencies, f"the heavy commands took only {results['seconds']:.2f} s: make the folder bigger"
    worst = max(max(pair) for pair in latencies)
    assert worst < GREETING_LIMIT_S, (worst, results["seconds"])
    c.logout()


def test_fetch_of_large_cached_messages_does_not_hold_up_other_sessions(server):
    """BODYSTRUCTURE of four 40 MB messages the kernel holds in memory: parsing them
    costs seconds, in a worker thread, never on the event loop (which held every other
    session of the process for all of it)."""
    c = login(server)
    c.create("Large")
    md = Maildir.for_account(server.root, "example.com", "alice")
    line = b"x" * 76 + b"\n"
    body = line * (40 * 1024 * 1024 // len(line))
    paths = [md.deliver(b"Subject: large %d\nMIME-Version: 1.0\nContent-Type: text/plain\n\n" % i + body,
                        "Large").path for i in range(4)]
    for path in paths:
        path.read_bytes()                         # into the page cache, as after a first read
    c.select("Large")
    results: dict[str, object] = {}

    def heavy():
        started = time.monotonic()
        for _ in range(3):
            results["fetch"] = c.fetch("1:4", "(BODYSTRUCTURE)")
        results["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=heavy)
    worker.start()
    latencies = []
    while worker.is_alive():
        latencies.append(max(greeting_after(server.ports["imap"]), greeting_after(server.ports["smtp"])))
        time.sleep(0.05)
    worker.join()
    typ, data = results["fetch"]
    assert typ == "OK" and len(data) == 4 and all(b"BODYSTRUCTURE (\"TEXT\" \"PLAIN\"" in d for d in data)
    # The typical greeting within 0.5 s, none held for seconds (a busy machine's scheduler
    # and the worker's share of the GIL delay some; before, the loop was held 2 s a FETCH).
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.5 and latencies[-1] < 2.0, (latencies, results["seconds"])
    assert len(latencies) >= 3, f"the FETCHes took only {results['seconds']:.2f} s"
    c.logout()


def test_a_search_past_the_command_time_limit_stops_in_its_worker_thread(tmp_path):
    """The client's NO at the time limit also ends the search's work: the process stops
    spending CPU on it (the limit made 1 s for the test, in an in-process server)."""
    root = make_root(tmp_path, accounts={ALICE: PASSWORD},
                     settings={"auth.allow_plaintext": True, "mailbox.command_time_limit_s": 1})
    md = Maildir.for_account(root, "example.com", "alice")
    md.create()
    md.create_folder("Big")
    _fill_big_folder(root, 600)
    with running_server(root) as srv:
        c = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=60)
        c.login(ALICE, PASSWORD)
        c.select("Big")
        typ, data = c.search(None, *_text_search_keys(24))      # some 5 s of work
        assert typ == "NO" and b"too long" in data[0], (typ, data)
        cpu = time.process_time()
        time.sleep(3)
        assert time.process_time() - cpu < 0.25
        assert c.noop()[0] == "OK"
        c.logout()


# -- 4. numbers -----------------------------------------------------------------------

def test_numbers_too_long_or_out_of_range_are_bad_and_the_session_goes_on(server):
    r = raw_session(server)
    r.send(b"t0 APPEND INBOX {14+}\r\nSubject: x\r\n\r\n\r\n")
    assert r.until_tag(b"t0")[-1].startswith(b"t0 OK")
    assert r.cmd(b"SELECT INBOX").startswith(b"t1 OK")
    commands = [b"FETCH " + HUGE + b" FLAGS", b"FETCH 1:" + HUGE + b" FLAGS",
                b"FETCH 1 BODY[]<" + HUGE + b".1>", b"FETCH 1 BODY[]<0." + HUGE + b">",
                b"FETCH 1 BODY.PEEK[]<0.4294967296>", b"FETCH 1 BODY[]<0.0>",
                b"UID FETCH " + HUGE + b" FLAGS", b"UID FETCH 0:1 FLAGS", b"FETCH 4294967296 FLAGS",
                b"SEARCH UID " + HUGE, b"SEARCH " + HUGE, b"SEARCH 1," + HUGE, b"SEARCH LARGER " + HUGE,
                b"STORE " + HUGE + b" +FLAGS (\\Seen)", b"UID STORE 1:" + HUGE + b" +FLAGS (\\Seen)",
                b"UID EXPUNGE " + HUGE, b"UID EXPUNGE 1:4294967296", b"COPY " + HUGE + b" INBOX",
                b"UID MOVE " + HUGE + b" INBOX"]
    for command in commands:
        reply = r.cmd(command)
        # a literal past any limit is refused at once, as too big (RFC 7889) or as bad
        ok = (b"t1 BAD", b"t1 NO [TOOBIG]") if command.startswith(b"APPEND") else (b"t1 BAD",)
        assert reply.startswith(ok), (command[:60], reply[:200])
        assert r.cmd(b"NOOP", b"t2").startswith(b"t2 OK")
    r.close()


# -- 7. APPEND dates --------------------------------------------------------------------

def test_append_dates_out_of_range_are_bad_and_others_are_kept_exactly(server):
    r = raw_session(server)
    for date in (b"01-Jan-0001 00:00:00 +2359", b"31-Dec-9999 23:59:59 +0000", b"31-Dec-1969 23:59:59 +0000",
                 b"01-Jan-1970 00:30:00 +0100", b"17-Jul-1996 02:44:25 -0760"):
        r.send(b't3 APPEND INBOX "' + date + b'" {14+}\r\nSubject: d\r\n\r\n\r\n')
        reply = r.until_tag(b"t3")[-1]
        assert reply.startswith(b"t3 BAD"), (date, reply)
    r.send(b't4 APPEND INBOX "17-Jul-1996 02:44:25 -0700" {14+}\r\nSubject: d\r\n\r\n\r\n')
    reply = r.until_tag(b"t4")[-1]
    assert reply.startswith(b"t4 OK [APPENDUID"), reply
    uid = reply.split()[4].rstrip(b"]")
    assert r.cmd(b"SELECT INBOX").startswith(b"t1 OK")
    r.send(b"t5 UID FETCH " + uid + b" INTERNALDATE\r\n")
    lines = r.until_tag(b"t5")
    assert b'INTERNALDATE "17-Jul-1996 09:44:25 +0000"' in lines[0], lines
    r.close()


# -- 8. arguments to commands that take none ---------------------------------------------

def test_commands_without_arguments_refuse_them(server):
    r = Raw(server.ports["imap"])
    for command in (b"STARTTLS garbage", b"CAPABILITY x", b"NOOP x", b"LOGOUT x"):
        reply = r.cmd(command)
        assert reply.startswith(b"t1 BAD") and b"no arguments" in reply, (command, reply)
    r.login(ALICE)
    for command in (b"IDLE x", b"NAMESPACE x"):
        assert r.cmd(command).startswith(b"t1 BAD"), command
    assert r.cmd(b"SELECT INBOX").startswith(b"t1 OK")
    for command in (b"CHECK x", b"EXPUNGE x", b"UNSELECT x", b"CLOSE x"):
        assert r.cmd(command).startswith(b"t1 BAD"), command
    assert r.cmd(b"CAPABILITY").startswith(b"t1 OK")
    assert r.cmd(b"LOGOUT").startswith(b"t1 OK")
    r.close()


# -- 10. BODYSTRUCTURE past the nesting limit, message/global ------------------------------

DEPTH = 45


def _nested(depth: int) -> list[bytes]:
    """messages[i] encloses messages[i + 1] as message/rfc822; the last is text."""
    inner = b"Subject: deepest\r\nContent-Type: text/plain\r\n\r\ndeep text\r\nline two\r\n"
    out = [inner]
    for level in range(depth - 1, -1, -1):
        out.insert(0, b"Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n" % level + out[0])
    return out


def test_bodystructure_past_the_nesting_limit_and_message_global_are_well_formed(server):
    chain = _nested(DEPTH)
    global_inner = "Subject: caf\u00e9\r\nFrom: \u00e9@example.org\r\n\r\nhello\r\n".encode()
    message = (b"From: x@example.org\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=BB\r\n\r\n"
               b"--BB\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
               b"--BB\r\nContent-Type: message/rfc822\r\n\r\n" + chain[0] + b"\r\n"
               b"--BB\r\nContent-Type: message/global\r\n\r\n" + global_inner + b"\r\n--BB--\r\n")
    client = imapclient.IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=60)
    client.login(ALICE, PASSWORD)
    client.create_folder("Nested")
    client.append("Nested", message)
    client.select_folder("Nested")
    structure = client.fetch([1], ["BODYSTRUCTURE"])[1][b"BODYSTRUCTURE"]   # imapclient's parser
    assert structure.is_multipart
    parts, subtype = structure[0], structure[1]
    assert subtype == b"MIXED" and len(parts) == 3
    assert parts[0][:2] == (b"TEXT", b"PLAIN") and parts[0][6] == len(b"first") and parts[0][7] == 0
    # message/global: the basic form (no envelope, body or line count)
    assert parts[2][:2] == (b"MESSAGE", b"GLOBAL") and parts[2][6] == len(global_inner)
    assert parts[2][7] is None and len(parts[2]) == 11
    # message/rfc822, level by level: octets, lines and envelope of each enclosed message
    node = parts[1]
    for level in range(DEPTH + 1):
        enclosed = chain[level]
        assert node[:2] == (b"MESSAGE", b"RFC822"), (level, node[:2])
        assert node[6] == len(enclosed) and node[9] == enclosed.count(b"\r\n"), level
        assert node[7][1] == enclosed.split(b"\r\n")[0][len(b"Subject: "):], level
        node = node[8]
        if node[:2] != (b"MESSAGE", b"RFC822"):
            break
    # past the limit, the enclosed message's body is one opaque part of its size
    assert level < DEPTH
    assert node[:2] == (b"APPLICATION", b"OCTET-STREAM")
    assert node[6] == len(enclosed) - enclosed.index(b"\r\n\r\n") - 4
    client.logout()
