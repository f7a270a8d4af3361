"""Sieve through real SMTP delivery (engine/accept/sieving.py in the pipeline): an account's
active script (Pigeonhole's layout: ~/sieve/<name>.sieve and the ~/.dovecot.sieve link)
files by Subject, a broken or hostile script leaves the message in INBOX, two serving
processes run the same scripts, and the server keeps serving."""
from __future__ import annotations

import email
import os
import smtplib
import time
import tomllib

import pytest

from engine.maildir import Maildir
from engine.sieve import scripts
from engine.sieve.interp import Script
from engine.sieve.lexer import SieveError
from helpers_process import serving_pid
from helpers_server import make_root, running_server, serve_process, wait_for_processes

BOB = "bob@example.com"
FILE_BY_SUBJECT = '''require ["fileinto", "mailbox", "variables"];
if header :matches "subject" "Invoice *" { fileinto :create "Invoices"; stop; }
if header :contains "subject" "list" { fileinto "NoSuchFolder"; }
'''


def home(root):
    return Maildir.for_account(root, "example.com", "bob").path


def subjects(root, folder: str) -> list[str]:
    box = Maildir.for_account(root, "example.com", "bob").folder(folder)
    return sorted(email.message_from_bytes(box.read(x))["Subject"] for x in box.sync())


def send(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        assert s.sendmail("carol@sender.org", [BOB],
                          f"From: carol@sender.org\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nhi\r\n".encode()) == {}
        assert s.noop()[0] == 250


def activate(root, text: str, name: str = "main") -> None:
    """Write the script as a file (a hostile one need not compile: the owner may put anything there)."""
    folder = home(root) / "sieve"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.sieve").write_text(text)
    scripts.activate(home(root), name)


def test_scripts_file_by_subject_and_bad_scripts_leave_mail_in_inbox(tmp_path):
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"},
                     settings={"queue.offline": True, "server.processes": 2})
    scripts.put_script(home(root), "main", FILE_BY_SUBJECT)
    scripts.activate(home(root), "main")
    assert os.readlink(home(root) / ".dovecot.sieve") == "sieve/main.sieve"
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        port = proc.ports["smtp"]
        by_process: dict[int, int] = {}
        n = 0
        while len(by_process) < 2 or n < 4:    # new connections until both processes filed some
            assert n < 60, "the kernel never spread the connections over both processes"
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
                pid = serving_pid(s.sock, proc.proc.pid)
                assert s.sendmail("carol@sender.org", [BOB], f"Subject: Invoice {n}\r\n\r\nhi\r\n".encode()) == {}
            by_process[pid] = by_process.get(pid, 0) + 1
            n += 1
        send(port, "mailing list post")        # a folder that does not exist: INBOX
        send(port, "hello")
        invoices = sorted(f"Invoice {i}" for i in range(n))
        assert subjects(root, "Invoices") == invoices
        assert subjects(root, "INBOX") == ["hello", "mailing list post"]

        activate(root, 'require "fileinto";\nif header :contains "subject" "x" { fileinto "Invoices" }\n')
        send(port, "syntax error x")
        hostile = {
            "nested ifs": "if true { " * 10_000 + "discard;" + " }" * 10_000,
            "1 MB script": "# " + "x" * (1 << 20) + "\ndiscard;\n",
            "catastrophic regex": 'require ["regex", "fileinto"];\n'
                                  'if header :regex "subject" "^(a+)+$" { fileinto "Invoices"; }\n',
            "1000 redirects": "".join(f'redirect "r{n}@far.example";\n' for n in range(1000)),
            "include loop": 'require "include";\ninclude "main";\n',          # activate() names it main
            "step limit": 'require "variables";\n' + 'if header :matches "subject" "*a*a*a*a*a*b" { discard; }\n' * 3000,
        }
        for name, text in hostile.items():
            activate(root, text)
            send(port, f"hostile {name} " + "a" * 60)
        assert subjects(root, "Invoices") == invoices
        inbox = subjects(root, "INBOX")
        mail = [s for s in inbox if not s.startswith("Your mail filter")]
        assert mail == sorted(["hello", "mailing list post", "syntax error x"]
                              + [f"hostile {name} " + "a" * 60 for name in hostile])
        # the owner is told of each broken script once (those stopped by a limit too)
        assert len(inbox) - len(mail) == 1 + len(hostile)
        assert not list(root.queue_dir.rglob("*.toml"))      # the 1000 redirects: none queued
        send(port, "still serving")


def test_redirect_is_queued_with_an_srs_sender_beside_the_kept_copy(tmp_path):
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings={"queue.offline": True})
    scripts.put_script(home(root), "fwd", 'require ["copy", "fileinto", "mailbox"];\n'
                                          'if header :contains "subject" "fwd" { redirect :copy "carol@far.example"; }\n'
                                          'if header :contains "subject" "both" { fileinto :copy :create "Archive"; }\n')
    scripts.activate(home(root), "fwd")
    with running_server(root) as srv:
        send(srv.ports["smtp"], "please fwd this")
        send(srv.ports["smtp"], "not this")
        send(srv.ports["smtp"], "both places")          # :copy beside the implicit keep: two copies
    assert subjects(root, "INBOX") == ["both places", "not this", "please fwd this"]
    assert subjects(root, "Archive") == ["both places"]
    queued = [tomllib.loads(p.read_text()) for p in root.queue_dir.rglob("*.toml")]
    assert len(queued) == 1
    assert [r["address"] for r in queued[0]["recipients"]] == ["carol@far.example"]
    assert queued[0]["sender"].startswith("SRS0=")          # forwarded as every forward: SRS


def test_a_link_out_of_the_sieve_directory_is_not_run(tmp_path):
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings={"queue.offline": True})
    scripts.put_script(home(root), "main", FILE_BY_SUBJECT)
    outside = tmp_path / "elsewhere.sieve"
    outside.write_text('require "fileinto";\nfileinto :create "Stolen";\n')
    os.symlink(str(outside), home(root) / ".dovecot.sieve")
    assert scripts.active_name(home(root)) is None
    os.unlink(home(root) / ".dovecot.sieve")
    os.symlink("sieve/../../elsewhere.sieve", home(root) / ".dovecot.sieve")
    assert scripts.active_name(home(root)) is None
    os.unlink(home(root) / ".dovecot.sieve")
    os.symlink("elsewhere", home(root) / "sieve" / "evil.sieve")     # a link inside sieve/: not opened
    os.symlink("sieve/evil.sieve", home(root) / ".dovecot.sieve")
    assert scripts.active_script(home(root)) is None


def test_discard_and_redirect_leave_no_copy_in_that_mailbox_only(tmp_path):
    accounts = {BOB: "bob-password-1", "alice@example.com": "alice-password-1", "dave@example.com": "dave-password-1"}
    root = make_root(tmp_path, accounts=accounts, settings={"queue.offline": True})
    alice = Maildir.for_account(root, "example.com", "alice").path
    scripts.put_script(home(root), "fwd", 'redirect "carol@far.example";\n')
    scripts.activate(home(root), "fwd")
    scripts.put_script(alice, "drop", "discard;\n")
    scripts.activate(alice, "drop")
    with running_server(root) as srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
            assert s.sendmail("carol@sender.org", list(accounts), b"From: carol@sender.org\r\nSubject: three\r\n\r\nhi\r\n") == {}
            assert s.sendmail("carol@sender.org", ["alice@example.com"], b"Subject: alice only\r\n\r\nhi\r\n") == {}
    box = {local: Maildir.for_account(root, "example.com", local).folder("INBOX") for local in ("bob", "alice", "dave")}
    assert {k: len(v.sync()) for k, v in box.items()} == {"bob": 0, "alice": 0, "dave": 1}
    queued = [tomllib.loads(p.read_text()) for p in root.queue_dir.rglob("*.toml")]
    assert [[r["address"] for r in q["recipients"]] for q in queued] == [["carol@far.example"]]


def test_imap4flags_are_stored_with_each_copy(tmp_path):
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings={"queue.offline": True})
    scripts.put_script(home(root), "flags", 'require ["imap4flags", "fileinto", "mailbox"];\n'
                                            'addflag ["\\\\Flagged", "$Work", "\\\\Recent"];\n'
                                            'fileinto :create :flags "\\\\Seen" "Read";\nkeep;\n')
    scripts.activate(home(root), "flags")
    with running_server(root) as srv:
        send(srv.ports["smtp"], "flag me")
    box = Maildir.for_account(root, "example.com", "bob")
    stored = {}
    for folder in ("INBOX", "Read"):
        f = box.folder(folder)
        (msg,) = f.sync()
        stored[folder] = set(msg.flags)
    assert stored == {"INBOX": {"\\Flagged", "$Work"}, "Read": {"\\Seen"}}      # \\Recent: not storable


def test_the_owner_is_told_once_per_error_and_never_of_a_global_script_s(tmp_path):
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings={"queue.offline": True,
                                                                          "server.processes": 2})
    activate(root, 'require "fileinto";\nif header :contains "subject" "x" {\n  fileinto\n}\n')
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        for n in range(6):                              # spread over both processes
            send(proc.ports["smtp"], f"one {n}")
        activate(root, "keep;\nfoo;\n")                  # another error: told again
        send(proc.ports["smtp"], "two")
        activate(root, "keep;\n")
        global_dir = root.path / "sieve" / "before.d"
        global_dir.mkdir(parents=True)
        (global_dir / "broken.sieve").write_text("if {\n")
        send(proc.ports["smtp"], "three")
    inbox = subjects(root, "INBOX")
    notices = [s for s in inbox if s.startswith("Your mail filter")]
    assert len(notices) == 2 and len(inbox) == 6 + 1 + 1 + 2, inbox
    box = Maildir.for_account(root, "example.com", "bob").folder("INBOX")
    texts = [box.read(m) for m in box.sync() if b"Your mail filter" in box.read(m)]
    for script in ('require "fileinto";\nif header :contains "subject" "x" {\n  fileinto\n}\n', "keep;\nfoo;\n"):
        with pytest.raises(SieveError) as error:
            Script(script)
        assert sum(str(error.value).encode() in t for t in texts) == 1
    assert all(str(root.path).encode() not in t and b"Auto-Submitted: auto-generated" in t for t in texts)


def test_the_environment_test_sees_this_delivery(tmp_path):
    """RFC 5183 items in a real delivery: we are the MDA, during delivery, on our host name,
    and the client's address is remote-ip (sieve-test, as a tool, answers MS and no phase)."""
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"},
                     settings={"queue.offline": True, "server.hostname": "mx1.example.com"})
    activate(root, 'require ["environment", "fileinto", "mailbox", "variables"];\n'
                   'if allof (environment :is "location" "MDA", environment :is "phase" "during",\n'
                   '          environment :is "host" "mx1.example.com", environment :is "domain" "example.com",\n'
                   '          environment :is "name" "mailctl", environment :is "remote-ip" "127.0.0.1") {\n'
                   '  fileinto :create "Seen";\n}\n')
    with running_server(root) as srv:
        send(srv.ports["smtp"], "seen")
    assert subjects(root, "Seen") == ["seen"]


DEDUPE = 'require ["duplicate", "fileinto", "mailbox"];\nif duplicate { fileinto :create "Dups"; }\n'


def _with_id(subject: str, msgid: str) -> bytes:
    return f"From: carol@sender.org\r\nTo: {BOB}\r\nSubject: {subject}\r\nMessage-ID: {msgid}\r\n\r\nhi\r\n".encode()


def test_duplicate_files_a_second_copy_of_a_message_id_and_forgets_after_its_period(tmp_path):
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings={"queue.offline": True})
    activate(root, DEDUPE + 'if duplicate :handle "tickets" :header "x-ticket" :seconds 1 { fileinto :create "Again"; }\n')
    with running_server(root) as srv, smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
        for subject, msgid in (("first", "<a@x>"), ("copy", "<a@x>"), ("other", "<b@x>"), ("no id", "")):
            s.sendmail("carol@sender.org", [BOB], _with_id(subject, msgid).replace(b"Message-ID: \r\n", b""))
        for n in range(3):             # the ticket's period is 1 s: the third comes after it
            data = _with_id(f"ticket {n}", f"<t{n}@x>").replace(b"Subject:", b"X-Ticket: 42\r\nSubject:")
            s.sendmail("carol@sender.org", [BOB], data)
            time.sleep(0.6 if n == 0 else 1.5)
    assert subjects(root, "Dups") == ["copy"]
    assert subjects(root, "Again") == ["ticket 1"]
    assert subjects(root, "INBOX") == ["first", "no id", "other", "ticket 0", "ticket 2"]


def test_two_serving_processes_take_one_message_id_once(tmp_path):
    from helpers_process import data_at_once, smtp_sessions_in_two_processes
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings={"queue.offline": True,
                                                                          "server.processes": 2})
    activate(root, DEDUPE)
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        sessions = list(smtp_sessions_in_two_processes(proc.ports["smtp"], proc.proc.pid).values())
        codes = data_at_once(sessions, "carol@sender.org", BOB, [_with_id(f"at once {n}", "<same@x>") for n in range(2)])
        assert codes == [250, 250]
    assert len(subjects(root, "INBOX")) == 1 and len(subjects(root, "Dups")) == 1


def test_include_runs_personal_and_global_scripts_in_delivery(tmp_path):
    root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings={"queue.offline": True})
    global_dir = root.path / "sieve" / "global"
    global_dir.mkdir(parents=True)
    (global_dir / "lists.sieve").write_text('require ["fileinto", "mailbox"];\n'
                                            'if header :contains "subject" "list" { fileinto :create "Lists"; stop; }\n')
    scripts.put_script(home(root), "invoices", 'require ["fileinto", "mailbox", "variables", "include"];\n'
                                               'global "where";\n'
                                               'if header :contains "subject" "invoice" { fileinto :create "${where}"; }\n')
    activate(root, 'require ["include", "variables"];\nglobal "where";\nset "where" "Bills";\n'
                   'include :global "lists";\ninclude "invoices";\ninclude :optional "not-there";\n')
    with running_server(root) as srv:
        for subject in ("list post", "invoice 9", "hello"):
            send(srv.ports["smtp"], subject)
        activate(root, 'require "include";\ninclude "missing";\n', name="broken")
        send(srv.ports["smtp"], "invoice 10")
    assert subjects(root, "Lists") == ["list post"] and subjects(root, "Bills") == ["invoice 9"]
    inbox = subjects(root, "INBOX")
    assert "hello" in inbox and "invoice 10" in inbox            # the missing include: INBOX, and told
    assert any(s.startswith("Your mail filter") for s in inbox)


def _redirecting(root, who: str, script: str) -> None:
    local = who.partition("@")[0]
    box = Maildir.for_account(root, "example.com", local)
    if not box.exists():
        box.create()
    scripts.put_script(box.path, "main", script)
    scripts.activate(box.path, "main")


def _inbox(root, local: str, folder: str = "INBOX") -> list[str]:
    box = Maildir.for_account(root, "example.com", local)
    if not box.exists():
        return []
    try:
        f = box.folder(folder)
    except Exception:       # noqa: BLE001 - no such folder: nothing there
        return []
    return sorted(email.message_from_bytes(f.read(x))["Subject"] for x in f.sync())


def test_a_redirect_to_a_local_mailbox_runs_its_scripts_and_a_loop_ends_in_one_inbox(tmp_path):
    people = {f"{n}@example.com": f"{n}-password-123" for n in ("ann", "ben", "cat", "dan", "eve", "fay")}
    root = make_root(tmp_path, accounts=people, settings={"queue.offline": True, "limits.max_forward_depth": 2})
    _redirecting(root, "ann@example.com", 'redirect "ben@example.com";\n')                 # ann -> ben, a loop
    _redirecting(root, "ben@example.com", 'redirect "ann@example.com";\n')
    _redirecting(root, "cat@example.com", 'require "copy";\nredirect :copy "dan@example.com";\n')          # cat keeps, dan files
    _redirecting(root, "dan@example.com", 'require ["fileinto", "mailbox"];\nfileinto :create "FromCat";\n')
    _redirecting(root, "eve@example.com", 'redirect "fay@example.com";\n')                 # a chain past the depth
    _redirecting(root, "fay@example.com", 'redirect "ann@example.com";\n')
    with running_server(root) as srv, smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
        for who in ("ann", "cat", "eve"):
            s.sendmail("carol@sender.org", [f"{who}@example.com"],
                       f"From: carol@sender.org\r\nSubject: to {who}\r\n\r\nhi\r\n".encode())
    assert _inbox(root, "ben") == ["to ann"]                  # ben's redirect back to ann: ben keeps it
    assert _inbox(root, "cat") == ["to cat"] and _inbox(root, "dan", "FromCat") == ["to cat"]
    # eve -> fay -> ann (depth 2) -> (ben: depth 3, past 2): ann keeps it
    assert _inbox(root, "eve") == [] and _inbox(root, "fay") == [] and _inbox(root, "ann") == ["to eve"]
    assert not list(root.queue_dir.rglob("*.toml"))          # nothing queued, nothing bounced


def test_editheader_changes_each_mailbox_s_own_copy(tmp_path):
    people = {"ann@example.com": "ann-password-1", "ben@example.com": "ben-password-1"}
    root = make_root(tmp_path, accounts=people, settings={"queue.offline": True})
    before = root.path / "sieve" / "before.d"
    before.mkdir(parents=True)
    (before / "strip.sieve").write_text('require "editheader";\ndeleteheader "x-internal";\n')
    _redirecting(root, "ann@example.com", 'require ["editheader", "fileinto", "mailbox"];\naddheader "X-Seen-By" "ann";\n'
                                          'if not exists "x-internal" { fileinto :create "Clean"; }\n')
    _redirecting(root, "ben@example.com", 'require "editheader";\naddheader :last "X-Seen-By" "ben";\n'
                                          'deleteheader "received";\n')
    with running_server(root) as srv, smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
        s.sendmail("carol@sender.org", ["ann@example.com", "ben@example.com"],
                   b"From: carol@sender.org\r\nX-Internal: secret\r\nSubject: edited\r\n\r\nhi\r\n")
    ann = Maildir.for_account(root, "example.com", "ann").folder("Clean")
    ben = Maildir.for_account(root, "example.com", "ben").folder("INBOX")
    [a] = [ann.read(m) for m in ann.sync()]
    [b] = [ben.read(m) for m in ben.sync()]
    assert b"X-Seen-By: ann\n" in a and b"X-Seen-By: ben" not in a and b"X-Internal" not in a
    assert b"X-Seen-By: ben\n\n" in b and b"X-Seen-By: ann" not in b and b"X-Internal" not in b
    assert b"\nReceived: " in b                                      # never deleted (RFC 5293 §7)


def test_a_looping_redirect_beside_a_fileinto_keeps_only_the_filed_copy(tmp_path):
    people = {"ann@example.com": "ann-password-1", "ben@example.com": "ben-password-1"}
    root = make_root(tmp_path, accounts=people, settings={"queue.offline": True})
    _redirecting(root, "ann@example.com", 'require ["fileinto", "mailbox"];\nfileinto :create "Saved";\n'
                                          'redirect "ben@example.com";\n')
    _redirecting(root, "ben@example.com", 'redirect "ann@example.com";\n')
    with running_server(root) as srv, smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
        s.sendmail("carol@sender.org", ["ann@example.com"], b"From: carol@sender.org\r\nSubject: saved\r\n\r\nhi\r\n")
    assert _inbox(root, "ann", "Saved") == ["saved"] and _inbox(root, "ann") == []
    assert _inbox(root, "ben") == ["saved"]
