"""Every way in is scanned: submission (AUTH), the pickup folder (an infected file goes to
pickup/failed/ with the reason; with clamd down it waits in pickup/), `mailctl send` and
sendmail; two serving processes; `mailctl status` (clamd answers or not, verdicts counted
over every process) and `mailctl check message`."""
from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
import time

import pytest

from conftest import run_cli
from helpers_clamav import EICAR, EICAR_NAME, Clamd, clean, with_attachment
from helpers_mailauth import delivered
from helpers_server import REPO, make_root, running_server, serve_process, serve_status, tls_context

BOB = "bob@example.com"
REFUSED = f"554 5.7.1 Rejected: message contains a virus ({EICAR_NAME}.UNOFFICIAL)"


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):
    with Clamd(tmp_path_factory.mktemp("clamd")) as c:
        yield c


def av_root(tmp_path, address, **more):
    values = {"queue.offline": True, "antivirus.enabled": True, "antivirus.clamd": address,
              "antivirus.timeout_s": 5, "pickup.settle_seconds": 0.1, "pickup.poll_seconds": 0.1,
              "mailauth.spf": False, "mailauth.dkim": False, "mailauth.dmarc": False, **more}
    return make_root(tmp_path, accounts={BOB: "bob-password-1", "alice@example.com": "alice-password-1"},
                     settings=values)


def wait_until(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_submission_is_scanned(tmp_path, clamd):
    root = av_root(tmp_path, clamd.socket)
    with running_server(root) as srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20) as s:
            s.starttls(context=tls_context())
            s.login("alice@example.com", "alice-password-1")
            s.mail("alice@example.com")
            s.rcpt(BOB)
            code, text = s.data(with_attachment(EICAR).replace(b"alice@far.example", b"alice@example.com"))
    assert f"{code} {text.decode()}" == REFUSED
    assert delivered(root) == []


def test_mailctl_send_and_sendmail_are_scanned(tmp_path, clamd):
    root = av_root(tmp_path, clamd.socket)
    refused = run_cli(root, "send", BOB, input=with_attachment(EICAR))
    assert refused.code == 1 and REFUSED in refused.err and "/" not in refused.err.split(REFUSED)[1]
    r = subprocess.run([sys.executable, "-m", "mailctl.sendmail", "--root", str(root.path), "-i", BOB],
                       input=with_attachment(EICAR).replace(b"\r\n", b"\n"), capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=str(REPO), timeout=60)
    assert r.returncode != 0 and REFUSED.encode() in r.stderr
    assert delivered(root) == []
    assert run_cli(root, "send", BOB, input=clean()).code == 0
    [m] = delivered(root)
    assert m["X-Virus-Scanned"] == "mailctl (ClamAV)"


@pytest.mark.parametrize("action", ["reject", "discard"])
def test_an_infected_pickup_file_goes_to_failed_with_the_reason(tmp_path, clamd, action):
    root = av_root(tmp_path, clamd.tcp, **{"antivirus.action": action})
    infected = with_attachment(EICAR)
    with running_server(root):
        (root.pickup_dir / "bad.tmp").write_bytes(infected)
        os.rename(root.pickup_dir / "bad.tmp", root.pickup_dir / "bad.eml")
        (root.pickup_dir / "good.tmp").write_bytes(clean("via pickup"))
        os.rename(root.pickup_dir / "good.tmp", root.pickup_dir / "good.eml")
        assert wait_until(lambda: (root.pickup_dir / "failed" / "bad.eml").exists() and len(delivered(root)) == 1)
    assert (root.pickup_dir / "failed" / "bad.eml").read_bytes() == infected
    note = (root.pickup_dir / "failed" / "bad.eml.error").read_text()
    assert note == f"bad.eml: {REFUSED}\n"
    [m] = delivered(root)
    assert m["Subject"] == "via pickup" and m["X-Virus-Scanned"] == "mailctl (ClamAV)"


def test_a_pickup_file_waits_while_clamd_is_down(tmp_path):
    own = Clamd(tmp_path / "own")
    root = av_root(tmp_path, own.socket)
    try:
        with running_server(root):
            (root.pickup_dir / "later.tmp").write_bytes(clean("later"))
            os.rename(root.pickup_dir / "later.tmp", root.pickup_dir / "later.eml")
            time.sleep(1.5)                      # several passes: each finds clamd down
            assert (root.pickup_dir / "later.eml").exists() and delivered(root) == []
            assert os.listdir(root.pickup_dir / "failed") == []
            own.start()
            assert wait_until(lambda: len(delivered(root)) == 1)
        assert not (root.pickup_dir / "later.eml").exists()
    finally:
        own.stop()


def test_two_serving_processes_scan_and_status_counts_both(tmp_path):
    own = Clamd(tmp_path / "own").start()
    root = av_root(tmp_path, own.tcp, **{"server.processes": 2})
    try:
        with serve_process(root) as proc:
            assert wait_until(lambda: len(serve_status(root).get("serving", [])) == 2)
            for i in range(8):                   # new connections: the kernel spreads them
                with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=20) as s:
                    s.ehlo("client.example")
                    s.mail("alice@far.example")
                    s.rcpt(BOB)
                    code, text = s.data(with_attachment(EICAR) if i % 2 else clean(f"clean {i}"))
                    assert (code, text.decode()) == ((554, REFUSED[4:]) if i % 2 else (250, text.decode()))
            status = serve_status(root)
            assert status["antivirus"].startswith("clamd answers (ClamAV 1.")
            assert status["counters"]["antivirus_infected"] == 4 and status["counters"]["antivirus_clean"] == 4
            assert len({p["pid"] for p in status["serving"]}) == 2
            shown = subprocess.run([sys.executable, "-m", "mailctl", "--root", str(root.path), "status"],
                                   capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                                   cwd=str(REPO), timeout=60).stdout
            assert "clamd answers (ClamAV" in shown
            own.stop()
            assert serve_status(root)["antivirus"] == "clamd does NOT answer (mail is deferred)"
        assert sorted(m["Subject"] for m in delivered(root)) == [f"clean {i}" for i in (0, 2, 4, 6)]
    finally:
        own.stop()


def test_check_message_shows_the_verdict(tmp_path, clamd):
    root = av_root(tmp_path, clamd.socket)
    (tmp_path / "bad.eml").write_bytes(with_attachment(EICAR))
    (tmp_path / "good.eml").write_bytes(clean())
    bad = run_cli(root, "check", "message", str(tmp_path / "bad.eml"), "--ip", "192.0.2.1")
    assert bad.code == 0, bad.err
    assert f"Virus scan: infected: {EICAR_NAME}.UNOFFICIAL (ClamAV); action reject" in bad.out
    assert bad.out.rstrip().endswith(REFUSED)
    good = run_cli(root, "check", "message", str(tmp_path / "good.eml"), "--ip", "192.0.2.1", "--json")
    out = json.loads(good.out)
    assert out["virus_scan"] == "clean (ClamAV)" and out["reply"] == "250 accepted"
