"""SRS addresses (engine/srs.py) as postsrsd makes and reverses them, and the secret
(engine/srs_secret.py): made once at init, 0600, the same for every process, rotated with
the old ones still verifying, kept by backups; `mailctl srs`."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import srs, srs_secret
from engine.backup.create import create_backup
from engine.backup.restore import restore_backup
from engine.newroot import init_root
from engine.root import Root
from helpers_server import mailctl

# postsrsd 2's published test vectors (tests/blackbox/socketmap.py): secret "tops3cr3t",
# our domain example.com, at 2020-01-01 00:01:00 UTC.
POSTSRSD = srs.Signer((b"tops3cr3t",), 4, 180)
WHEN = 1577836860
FORWARDS = [
    ("test@otherdomain.com", "SRS0=vmyz=2W=otherdomain.com=test@example.com"),
    ("SRS0=opaque+string@otherdomain.com", "SRS1=chaI=otherdomain.com==opaque+string@example.com"),
    ("SRS1=X=thirddomain.com==opaque+string@otherdomain.com", "SRS1=JIBX=thirddomain.com==opaque+string@example.com"),
]
REVERSES = [
    ("SRS0=XjO9=2V=otherdomain.com=test@example.com", "test@otherdomain.com"),
    ("SRS1=JIBX=thirddomain.com==opaque+string@example.com", "SRS0=opaque+string@thirddomain.com"),
    ("srs0=xjo9=2v=otherdomain.com=test@example.com", "test@otherdomain.com"),
    ("SRS0=XJO9=2V=OTHERDOMAIN.COM=TEST@EXAMPLE.COM", "TEST@otherdomain.com"),
]
REFUSED = [
    ("SRS0=te87=T7=otherdomain.com=test@example.com", "expired"),     # six months old
    ("SRS0=VcIb=7N=otherdomain.com=test@example.com", "expired"),     # six months ahead
    ("SRS0=FAKE=2V=otherdomain.com=test@example.com", "bad hash"),
    ("SRS0=@example.com", "malformed"),
    ("SRS0=XjO9@example.com", "malformed"),
    ("SRS0=XjO9=2V@example.com", "malformed"),
    ("SRS0=XjO9=2V=otherdomain.com@example.com", "malformed"),
    ("test@example.com", "not an SRS address"),
]


@pytest.mark.parametrize("sender, made", FORWARDS)
def test_forward_makes_what_postsrsd_makes(sender, made):
    assert srs.forward(POSTSRSD, sender, "example.com", WHEN) == made


@pytest.mark.parametrize("address, original", REVERSES)
def test_reverse_takes_what_postsrsd_takes(address, original):
    assert srs.reverse(POSTSRSD, address, WHEN) == original


@pytest.mark.parametrize("address, why", REFUSED)
def test_reverse_refuses_what_postsrsd_refuses(address, why):
    with pytest.raises(srs.SRSError, match=why):
        srs.reverse(POSTSRSD, address, WHEN)


def test_max_age_is_counted_in_whole_days_and_the_stamp_wraps_after_1024():
    sign = srs.Signer((b"k",), 4, 21)
    made = srs.forward(sign, "carol@orig.example", "example.com", WHEN)
    assert srs.reverse(sign, made, WHEN + 21 * 86400) == "carol@orig.example"
    with pytest.raises(srs.SRSError, match="expired"):
        srs.reverse(sign, made, WHEN + 22 * 86400)
    with pytest.raises(srs.SRSError, match="expired"):
        srs.reverse(sign, made, WHEN - 86400)                    # from the future
    assert srs.reverse(sign, made, WHEN + 1024 * 86400) == "carol@orig.example"    # the cycle


def test_rotation_signs_with_the_first_secret_and_verifies_with_any():
    old, new = srs.Signer((b"old",)), srs.Signer((b"new", b"old"))
    by_old = srs.forward(old, "carol@orig.example", "example.com", WHEN)
    assert srs.reverse(new, by_old, WHEN) == "carol@orig.example"
    assert srs.forward(new, "carol@orig.example", "example.com", WHEN) != by_old
    with pytest.raises(srs.SRSError, match="bad hash"):
        srs.reverse(srs.Signer((b"other",)), by_old, WHEN)


def test_hash_length_is_respected_and_a_shorter_hash_refused():
    long_ = srs.Signer((b"k",), 8)
    made = srs.forward(long_, "carol@orig.example", "example.com", WHEN)
    assert len(made.split("=")[1]) == 8 and srs.reverse(long_, made, WHEN) == "carol@orig.example"
    short = made.replace(made.split("=")[1], made.split("=")[1][:4])
    with pytest.raises(srs.SRSError, match="bad hash"):
        srs.reverse(long_, short, WHEN)
    assert srs.reverse(srs.Signer((b"k",), 4), short, WHEN) == "carol@orig.example"


@pytest.mark.parametrize("original", ["x@[127.0.0.1]", "x@localhost", "x y@orig.example", "../x@orig.example",
                                      "x@orig.example.", "x@orig/example"])
def test_a_valid_hash_never_makes_a_route_or_a_path(original):
    local, _, host = original.rpartition("@")
    ts = srs.stamp(WHEN)
    h = srs.make_hash(b"k", ts, host, local)[:4]
    with pytest.raises(srs.SRSError):
        srs.reverse(srs.Signer((b"k",)), f"SRS0={h}={ts}={host}={local}@example.com", WHEN)


def test_a_slash_in_the_original_local_part_or_an_inner_hash_reverses():
    """RFC 5321 atext holds '/', and base64 hashes carry it: such an address is a remote
    recipient, never a path, so SRS gives it back (an SRS1's inner SRS0 included)."""
    sign = srs.Signer((b"k",))
    made = srs.forward(sign, "a/b@orig.example", "example.com", WHEN)
    assert srs.reverse(sign, made, WHEN) == "a/b@orig.example"
    inner = "SRS0=ab/c=AB=a.example=u@other.example"
    again = srs.forward(sign, inner, "example.com", WHEN)
    assert again.startswith("SRS1=") and srs.reverse(sign, again, WHEN) == inner


# -- the secret -----------------------------------------------------------------------------

def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_init_makes_the_secret_0600_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        init_root(Root(tmp_path / "r"), hostname="mx.example.com")
    finally:
        os.umask(old)
    path = Root(tmp_path / "r").state_dir / "srs.secret"
    assert mode(path) == 0o600
    [secret] = srs_secret.parse(path.read_text())
    assert len(secret) >= 32


LOAD = ("import sys; from engine import srs_secret; from engine.root import Root; "
        "sys.stdout.write(srs_secret.load(Root(sys.argv[1]))[0].decode())")


def test_processes_starting_together_share_one_secret(tmp_path):
    root = Root(tmp_path / "r")
    root.state_dir.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [subprocess.Popen([sys.executable, "-c", LOAD, str(root.path)], stdout=subprocess.PIPE, env=env)
             for _ in range(8)]
    seen = {p.communicate(timeout=60)[0] for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(seen) == 1 and seen == {srs_secret.load(root)[0]}
    assert len(srs_secret.parse((root.state_dir / "srs.secret").read_text())) == 1
    assert not [p for p in root.state_dir.iterdir() if p.name != "srs.secret"]     # no temp left


def test_rotate_keeps_old_secrets_and_a_running_process_sees_it(tmp_path):
    root = Root(tmp_path / "r")
    init_root(root, hostname="mx.example.com")
    first = srs_secret.load(root)
    made = srs.forward(srs.Signer(first), "carol@orig.example", "example.com", time.time())
    r = mailctl(root, "srs", "rotate")
    assert r.returncode == 0, r.stderr
    now = srs_secret.load(root)                     # the cache follows the file
    assert len(now) == 2 and now[1:] == first and mode(root.state_dir / "srs.secret") == 0o600
    assert srs.reverse(srs.Signer(now), made, time.time()) == "carol@orig.example"
    for _ in range(6):
        srs_secret.rotate(root)
    assert len(srs_secret.load(root)) == 1 + srs_secret.KEEP_OLD


def test_mailctl_srs_forward_and_reverse(tmp_path):
    root = Root(tmp_path / "r")
    init_root(root, hostname="mx.example.com")
    r = mailctl(root, "srs", "forward", "carol@orig.example", "example.com")
    assert r.returncode == 0 and r.stdout.startswith("SRS0="), r.stderr
    back = mailctl(root, "srs", "reverse", r.stdout.strip())
    assert back.returncode == 0 and back.stdout.strip() == "carol@orig.example"
    bad = mailctl(root, "srs", "reverse", "SRS0=abcd=AA=x.example=y@example.com")
    assert bad.returncode == 1 and "not a valid SRS address" in bad.stderr and "Traceback" not in bad.stderr


def test_a_backup_keeps_the_secret_and_a_restore_brings_it_back(tmp_path):
    root = Root(tmp_path / "r")
    init_root(root, hostname="mx.example.com")
    secret = (root.state_dir / "srs.secret").read_bytes()
    made = create_backup(root, tmp_path / "backups")
    copy = made.path / "files" / "state" / "srs.secret"
    assert copy.read_bytes() == secret and mode(copy) == 0o600
    target = Root(tmp_path / "restored")
    restore_backup(made.path, target)
    assert (target.state_dir / "srs.secret").read_bytes() == secret
    assert mode(target.state_dir / "srs.secret") == 0o600


CHILD = r"""
import os, sys
from engine.root import Root
from engine.runtime import Runtime
from engine.pickup import Pickup
import engine.queue
engine.queue.StagedItem.commit = lambda self: os._exit(9)        # killed at the first queue commit
root = Root(sys.argv[1])
rt = Runtime.for_tests(root)
rt.settings.pickup.settle_seconds = 0
Pickup(root, lambda: rt.settings, lambda: rt.directory).run_pass()
"""


def test_a_pickup_killed_between_two_queue_items_finishes_both(tmp_path_factory, tmp_path):
    """A forwarded copy (SRS sender) and a relayed one (the sender's own) are two queue
    items of one message: the pickup folder's crash marker names both."""
    from engine import directory_edit, settings as settings_mod
    from engine.pickup import Pickup
    from engine.queue import Queue
    from engine.runtime import Runtime
    from helpers_queue import local_root
    root = local_root(tmp_path_factory, tmp_path)
    directory_edit.set_forward(root, settings_mod.load(root.config_file), "bob@example.com", ["bob@far.example"], False)
    (root.pickup_dir / "k.eml").write_bytes(
        b"X-Sender: carol@orig.example\r\nX-Receiver: bob@example.com\r\nX-Receiver: x@remote.example\r\n"
        b"Subject: killed\r\n\r\nbody\r\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    r = subprocess.run([sys.executable, "-c", CHILD, str(root.path)], capture_output=True, timeout=60, env=env)
    assert r.returncode == 9, r.stderr.decode()[-2000:]
    assert not Queue(root).all()
    rt = Runtime.for_tests(root)
    assert Pickup(root, lambda: rt.settings, lambda: rt.directory).recover() == 0
    rt.close()
    got = {e.recipients[0].address: e.sender for e in Queue(root).all()}
    assert got["x@remote.example"] == "carol@orig.example"
    assert got["bob@far.example"].startswith("SRS0=") and got["bob@far.example"].endswith("=orig.example=carol@example.com")
    assert len(got) == 2 and not list((root.pickup_dir / ".work").iterdir())


def test_init_as_root_gives_the_secret_to_the_serving_user_who_can_rotate_it(open_tmp_path, default_mail_user):
    """As the DKIM and TLS keys: the serving processes (server.user) read it, others cannot."""
    root = Root(open_tmp_path / "mailroot")
    r = subprocess.run([sys.executable, "-m", "mailctl", "--root", str(root.path), "init", "--hostname",
                        "mx.example.com", "--high-ports"], capture_output=True, text=True, timeout=120,
                       preexec_fn=lambda: os.umask(0o022))
    assert r.returncode == 0, r.stderr
    path = root.state_dir / "srs.secret"
    st = os.stat(path)
    assert (st.st_uid, mode(path)) == (default_mail_user.uid, 0o600)
    r = mailctl(root, "srs", "rotate")             # run by root: becomes the root's owner
    assert r.returncode == 0, r.stderr
    st = os.stat(path)
    assert (st.st_uid, mode(path)) == (default_mail_user.uid, 0o600)
    assert len(srs_secret.parse(path.read_text())) == 2
