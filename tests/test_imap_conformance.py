"""IMAP conformance scripts (tests/conformance/*.imap) run against a real `mailctl serve`
with two serving processes, so the sessions of one script may land in different processes.

The script format is documented at the top of tests/imapscript.py. Each script runs on two
accounts of its own (${USER}, ${OTHER}), made fresh for this run, so scripts never see each
other's mail. With Dovecot installed, every script not marked `@dovecot skip` also runs
against Dovecot over the same kind of tree (test_script_against_dovecot): that is how the
expected texts were checked against a reference server.

    pytest tests/test_imap_conformance.py -k select_   # some scripts
    pytest tests/test_imap_conformance.py -k dovecot   # only the Dovecot runs
"""
from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path

import pytest

import dovecot
from helpers_server import make_root, serve_process, wait_for_processes
from imapscript import run_script

SCRIPTS = Path(__file__).parent / "conformance"
NAMES = sorted(p.stem for p in SCRIPTS.glob("*.imap"))
PASSWORD = "secret-pass-1"

# Scripts whose RFC-correct expectation the server does not meet yet. Remove a name when
# its fix lands: strict xfail fails the run as soon as the script passes, so a stale entry
# is noticed.
XFAIL: dict[str, str] = {
    # script name: the defect that makes it fail, until fixed (strict: a fix must remove it)
}


def accounts(index: int) -> tuple[str, str]:
    return f"s{index:02d}a@example.com", f"s{index:02d}b@example.com"


def all_accounts() -> dict[str, str]:
    out = {}
    for i in range(len(NAMES)):
        for address in accounts(i):
            out[address] = PASSWORD
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("conformance"), accounts=all_accounts(), settings={
        "server.processes": 2, "auth.allow_plaintext": True, "auth.failure_delay_s": 0,
        "auth.ban_after_failures": 0, "mailbox.max_sessions_per_user": 0,
        "mailbox.max_userip_connections": 0, "mailbox.max_connections_per_ip": 0,
        "queue.offline": True})
    with serve_process(root) as proc:
        wait_for_processes(root, 2)
        yield proc


@pytest.fixture(scope="module")
def dovecot_imap():
    if not dovecot.available():
        pytest.skip("dovecot is not installed")
    # Our tree, as `mailctl account add` makes it (special folders, subscriptions), served by
    # Dovecot. Not under pytest's basetemp: another pytest run sets its parent back to 0700,
    # and Dovecot's mail user must pass through it.
    top = Path(tempfile.mkdtemp(prefix="conformance-dovecot-"))
    try:
        root = make_root(top, accounts=all_accounts())
        with dovecot.dovecot_server(root.path, all_accounts()) as dc:
            yield dc
    finally:
        shutil.rmtree(top, ignore_errors=True)


def variables(name: str) -> dict[str, str]:
    user, other = accounts(NAMES.index(name))
    plain = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    return {"USER": user, "OTHER": other, "PASS": PASSWORD, "PLAIN": plain}


def params():
    for name in NAMES:
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[name])] if name in XFAIL else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", params())
def test_script(server, name):
    run_script(SCRIPTS / f"{name}.imap", "127.0.0.1", server.ports["imap"], variables(name))


@pytest.mark.parametrize("name", NAMES)
def test_script_against_dovecot(dovecot_imap, name):
    from imapscript import parse
    skip = parse(SCRIPTS / f"{name}.imap").dovecot_skip
    if skip:
        pytest.skip(f"not for Dovecot: {skip}")
    run_script(SCRIPTS / f"{name}.imap", dovecot_imap.host, dovecot_imap.imap_port, variables(name))


def test_xfail_names_are_scripts():
    assert set(XFAIL) <= set(NAMES), set(XFAIL) - set(NAMES)


def test_every_advertised_capability_has_a_script(server):
    from imapscript import Session
    s = Session("127.0.0.1", server.ports["imap"])
    s.read_line()
    s.sock.sendall(f"a LOGIN {accounts(0)[0]} {PASSWORD}\r\n".encode())
    caps = s.read_line().decode()
    s.close()
    advertised = caps.split("[CAPABILITY ", 1)[1].split("]", 1)[0].split()
    covered = {"IMAP4rev1": "select_", "IMAP4rev2": "rev2_", "LITERAL+": "append_literal_plus", "SASL-IR": "auth_sasl_ir",
               "ID": "id_", "ENABLE": "enable_", "IDLE": "idle_", "NAMESPACE": "namespace",
               "UIDPLUS": "uidplus_", "MOVE": "move_", "UNSELECT": "unselect", "CHILDREN": "list_children",
               "SPECIAL-USE": "list_special_use", "QUOTA": "quota", "BINARY": "binary_",
               "APPENDLIMIT": "appendlimit", "CONDSTORE": "condstore_", "QRESYNC": "qresync_",
               "ESEARCH": "esearch_", "SEARCHRES": "searchres_",
               "WITHIN": "within_", "SORT": "sort_", "ESORT": "sort_esort", "THREAD": "thread_",
               "LIST-EXTENDED": "listext_", "LIST-STATUS": "liststatus_",
               "CREATE-SPECIAL-USE": "specialuse_", "STATUS": "statussize_", "METADATA": "metadata_",
               "MULTIAPPEND": "multiappend_", "CATENATE": "catenate_", "COMPRESS": "compress_",
               "ACL": "acl_", "RIGHTS": "acl_", "PREVIEW": "preview_", "SAVEDATE": "savedate_"}
    for cap in advertised:
        key = cap.split("=")[0]
        assert key in covered, f"capability {cap} has no conformance script"
        assert any(n.startswith(covered[key]) for n in NAMES), f"no script {covered[key]}* for {cap}"


def test_runner_fails_on_a_wrong_or_an_extra_line(server, tmp_path):
    """The runner is exact: a wrong tagged line, an untagged line nobody expected, and an
    unordered group missing a line each fail the script."""
    from imapscript import ScriptError
    login = "C1: a LOGIN ${USER} ${PASS}\nS1: a OK ...\n"
    select = "C1: b SELECT INBOX\n"
    cases = {
        "wrong": login.replace("a OK", "a NO"),
        "extra": login + select + "S1: b OK ...\n",
        "group": login + select + "S1~ * FLAGS (...)\nS1~ * 0 EXISTS\nS1: b OK ...\n",
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}.imap"
        path.write_text(text)
        with pytest.raises(ScriptError):
            run_script(path, "127.0.0.1", server.ports["imap"], variables(NAMES[0]))
