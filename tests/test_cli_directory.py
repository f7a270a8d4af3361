"""Every directory command through the CLI, with good and hostile input."""
from __future__ import annotations

import json

import pytest

from conftest import PASSWORD, run_cli, run_mailctl, tree_snapshot
from engine.directory import Directory


def ok(result):
    assert result.code == 0, (result.out, result.err)
    return result


def fails(result, *words):
    """A user error: exit 1, one line on stderr naming what, no traceback."""
    assert result.code == 1, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for w in words:
        assert w.lower() in result.err.lower(), (w, result.err)
    return result


@pytest.fixture
def domain(cli):
    ok(cli("domain", "add", "example.com"))
    return "example.com"


@pytest.fixture
def alice(cli, domain):
    ok(cli("account", "add", "alice@example.com", "--name", "Alice", "--password-stdin", input=PASSWORD + "\n"))
    return "alice@example.com"


# -- init and config -------------------------------------------------------------

def test_init_creates_root_layout(tmp_path):
    r = ok(run_cli(tmp_path / "r", "init", "--domain", "example.com", "--hostname", "mail.example.com", "--high-ports"))
    assert "unprivileged ports" in r.out
    for sub in ("mailctl.toml", "domains/example.com.toml", "tls/cert.pem", "tls/key.pem", "queue",
                "pickup/failed", "state", "removed", "log", "run"):
        assert (tmp_path / "r" / sub).exists(), sub
    assert "port = 2525" in (tmp_path / "r" / "mailctl.toml").read_text()
    ok(run_cli(tmp_path / "r", "config", "check"))
    fails(run_cli(tmp_path / "r", "init"), "already a mail root")


def test_commands_outside_a_root_say_so(tmp_path):
    fails(run_cli(tmp_path / "nothing", "domain", "list"), "not a mail root", "mailctl init")


def test_config_show(cli):
    assert ok(cli("config", "show", "limits.max_recipients")).out.strip() == "100"
    data = json.loads(ok(cli("config", "show", "--json")).out)
    assert data["listeners"]["smtp"]["port"] == 2525
    assert data["server"]["hostname"] == "mail.example.com"
    fails(cli("config", "show", "limits.nope"), "unknown setting")


# -- domains ---------------------------------------------------------------------

def test_domain_lifecycle(cli, root):
    ok(cli("domain", "add", "Example.COM"))
    ok(cli("domain", "add", "bücher.de"))
    rows = json.loads(ok(cli("domain", "list", "--json")).out)
    assert [r["domain"] for r in rows] == ["example.com", "xn--bcher-kva.de"]
    ok(cli("domain", "alias", "add", "example.com", "example.net"))
    assert json.loads(ok(cli("domain", "show", "example.net", "--json")).out)["domain"] == "example.com"
    fails(cli("domain", "alias", "add", "xn--bcher-kva.de", "example.net"), "already an alias")
    fails(cli("domain", "add", "example.net"), "already an alias")
    ok(cli("domain", "alias", "remove", "example.com", "example.net"))
    fails(cli("domain", "show", "example.net"), "does not exist")
    ok(cli("domain", "disable", "example.com"))
    assert json.loads(cli("domain", "show", "example.com", "--json").out)["enabled"] is False
    ok(cli("domain", "enable", "example.com"))
    fails(cli("domain", "set", "example.com", "--catch-all", "info"), "info@example.com", "Unknown User")
    ok(cli("alias", "add", "info@example.com", "someone@elsewhere.org"))
    ok(cli("domain", "set", "example.com", "--catch-all", "info", "--max-message-size", "10"))
    shown = json.loads(cli("domain", "show", "example.com", "--json").out)
    assert shown["catch_all"] == "info@example.com" and shown["max_message_size_mb"] == 10
    fails(cli("domain", "remove", "example.com"), "--yes")
    ok(cli("domain", "remove", "example.com", "--yes"))
    assert not (root.domains_dir / "example.com.toml").exists()


@pytest.mark.parametrize("bad", ["x@-bad-.com", "-bad-.com", "nodot", "a..b.com", "[127.0.0.1]", "exa mple.com",
                                 "example.com.", "a\x00b.com", "x" * 70 + ".com", "../../etc.com", "1.2.3.4"])
def test_domain_add_rejects_bad_names(cli, root, bad):
    before = tree_snapshot(root.path)
    fails(cli("domain", "add", "--", bad), "domain")
    assert tree_snapshot(root.path) == before


def test_unknown_domain(cli):
    fails(cli("domain", "show", "nope.com"), "nope.com", "does not exist")
    fails(cli("account", "add", "a@nope.com", "--password-stdin", input=PASSWORD), "nope.com")
    fails(cli("alias", "add", "a@nope.com", "b@x.com"), "nope.com")


# -- accounts ------------------------------------------------------------------------

def test_account_lifecycle(cli, root, alice):
    box = root.mail_dir / "example.com" / "alice"
    for sub in ("cur", "new", "tmp", ".Sent", ".Drafts", ".Trash", ".Junk", ".Archive"):
        assert (box / sub).is_dir(), sub
    rows = json.loads(ok(cli("account", "list", "--json")).out)
    assert rows == [{"address": "alice@example.com", "name": "Alice", "quota_mb": 0, "enabled": True,
                     "forward": [], "forward_keep_copy": True, "has_password": True}]
    shown = ok(cli("account", "show", "ALICE@Example.com", "--json"))
    assert json.loads(shown.out)["mailbox"] == "mail/example.com/alice"
    for out in (shown.out, cli("account", "list").out, cli("account", "show", "alice@example.com").out):
        assert "argon2" not in out
    ok(cli("account", "quota", "alice@example.com", "5"))
    assert json.loads(cli("account", "show", "alice@example.com", "--json").out)["quota_mb"] == 5
    ok(cli("account", "disable", "alice@example.com"))
    assert json.loads(cli("account", "show", "alice@example.com", "--json").out)["enabled"] is False
    ok(cli("account", "enable", "alice@example.com"))
    ok(cli("account", "name", "alice@example.com", "Alice B."))
    old_hash = Directory.load(root).account("alice@example.com").password
    ok(cli("account", "passwd", "alice@example.com", "--password-stdin", input="another-pass-2\n"))
    from engine.passwords import verify
    new_hash = Directory.load(root).account("alice@example.com").password
    assert new_hash != old_hash and verify(new_hash, "another-pass-2")
    removed = ok(cli("account", "remove", "alice@example.com"))
    assert "removed/" in removed.out
    assert not box.exists()
    kept = list((root.removed_dir / "example.com").iterdir())
    assert len(kept) == 1 and (kept[0] / "cur").is_dir()
    assert json.loads(cli("account", "list", "--json").out) == []


def test_account_password_file_and_no_password_on_argv(cli, domain, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    ok(cli("account", "add", "bob@example.com", "--password-file", str(pw)))
    fails(cli("account", "add", "carol@example.com", "--password-file", str(tmp_path / "missing")), "password file")
    fails(cli("account", "add", "dave@example.com"), "--password-stdin")     # no terminal to prompt
    fails(cli("account", "add", "erin@example.com", "--password-stdin", input="short\n"), "too short")
    r = cli("account", "add", "frank@example.com", "hunter22hunter")
    assert r.code == 2


def test_duplicate_account(cli, root, alice):
    before = tree_snapshot(root.domains_dir)
    fails(cli("account", "add", "Alice@EXAMPLE.com", "--password-stdin", input=PASSWORD), "alice@example.com", "already exists")
    ok(cli("alias", "add", "sales@example.com", "alice"))
    fails(cli("account", "add", "sales@example.com", "--password-stdin", input=PASSWORD), "already exists as an alias")
    assert tree_snapshot(root.domains_dir) != before   # only the alias changed it


@pytest.mark.parametrize("bad", ["../x@example.com", "a b@example.com", "x" * 300 + "@example.com",
                                 "x@-bad-.com", "a\x00b@example.com", "a/b@example.com", "noat", "a@@example.com",
                                 ".a@example.com", "a.@example.com", "a@example.com.", "\"q\"@example.com", ""])
def test_invalid_addresses_change_nothing(cli, root, domain, bad):
    before = tree_snapshot(root.path)
    for args in (("account", "add", bad, "--password-stdin"), ("alias", "add", bad, "alice"),
                 ("list", "add", bad), ("forward", "set", bad, "x@y.org"), ("deliver", bad)):
        r = cli(*args, input=PASSWORD + "\n")
        assert r.code == 1 and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, (args, r)
        assert "address" in r.err.lower() or "local part" in r.err.lower() or "domain" in r.err.lower(), r.err
    assert tree_snapshot(root.path) == before
    assert not any(p.name == "x" for p in root.path.parent.iterdir())


# -- aliases, forwards, lists -------------------------------------------------------------

def test_alias_commands(cli, alice):
    ok(cli("alias", "add", "sales@example.com", "alice", "ext@other.org"))
    ok(cli("alias", "add", "sales@example.com", "boss@other.org"))
    rows = json.loads(ok(cli("alias", "list", "example.com", "--json")).out)
    assert rows == [{"address": "sales@example.com", "enabled": True,
                     "targets": ["alice@example.com", "ext@other.org", "boss@other.org"]}]
    ok(cli("alias", "remove", "sales@example.com", "ext@other.org"))
    assert json.loads(cli("alias", "list", "--json").out)[0]["targets"] == ["alice@example.com", "boss@other.org"]
    fails(cli("alias", "remove", "sales@example.com", "nobody@other.org"), "not a target")
    ok(cli("alias", "remove", "sales@example.com"))
    assert json.loads(cli("alias", "list", "--json").out) == []
    fails(cli("alias", "remove", "sales@example.com"), "does not exist")
    fails(cli("alias", "add", "x@example.com", "ghost"), "ghost@example.com", "Unknown User")


def test_alias_loop_refused(cli, root, alice):
    ok(cli("alias", "add", "a@example.com", "alice"))
    ok(cli("alias", "add", "b@example.com", "a"))
    before = tree_snapshot(root.path)
    fails(cli("alias", "add", "a@example.com", "b"), "loop", "a@example.com -> b@example.com -> a@example.com")
    fails(cli("alias", "add", "c@example.com", "c"), "loop")
    assert tree_snapshot(root.path) == before


def test_forward_limits(cli, root, alice):
    targets = [f"t{i}@other.org" for i in range(21)]
    fails(cli("forward", "set", "alice@example.com", *targets), "at most 20")
    ok(cli("forward", "set", "alice@example.com", *targets[:20], "--keep-copy"))
    acc = Directory.load(root).account("alice@example.com")
    assert len(acc.forward) == 20 and acc.forward_keep_copy
    ok(cli("forward", "clear", "alice@example.com"))
    assert Directory.load(root).account("alice@example.com").forward == ()
    fails(cli("forward", "set", "nobody@example.com", "x@y.org"), "does not exist")


def test_list_commands(cli, alice):
    ok(cli("list", "add", "team@example.com", "--mode", "members", "--member", "alice"))
    ok(cli("list", "member", "add", "team@example.com", "bob@other.org", "carol@other.org"))
    ok(cli("list", "member", "remove", "team@example.com", "carol@other.org"))
    shown = json.loads(ok(cli("list", "show", "team@example.com", "--json")).out)
    assert shown == {"address": "team@example.com", "mode": "members", "sender": "",
                     "members": ["alice@example.com", "bob@other.org"], "enabled": True, "require_auth": False}
    assert json.loads(ok(cli("list", "list", "--json")).out)[0]["members"] == 2
    fails(cli("list", "add", "news@example.com", "--mode", "announce"), "--sender")
    fails(cli("list", "member", "add", "team@example.com", "ghost"), "member ghost@example.com", "Unknown User")
    fails(cli("list", "add", "x2@example.com", "--member", "ghost"), "Unknown User")
    assert cli("list", "add", "x@example.com", "--mode", "bogus").code == 2
    ok(cli("list", "remove", "team@example.com"))
    fails(cli("list", "show", "team@example.com"), "does not exist")


# -- hand edits ----------------------------------------------------------------------

def test_broken_toml_reported_with_file_and_line(cli, root, alice):
    f = root.domains_dir / "example.com.toml"
    good = f.read_text()
    f.write_text(good + "\n[accounts.bob]\nquota_mb = \"lots\"\nfavourite = 1\n")
    r = run_cli(root, "config", "check")
    assert r.code == 1
    lines = r.err.strip().splitlines()
    quota_line = good.count("\n") + 3
    assert f"domains/example.com.toml:{quota_line}: accounts.bob.quota_mb: must be a whole number" in lines[0]
    assert f"domains/example.com.toml:{quota_line + 1}: accounts.bob.favourite: unknown key" in lines[1]
    f.write_text(good + "\n[accounts.bob\n")
    r = run_cli(root, "config", "check")
    assert r.code == 1 and f"domains/example.com.toml:{good.count(chr(10)) + 2}: syntax:" in r.err
    before = tree_snapshot(root.path)
    fails(cli("alias", "add", "x@example.com", "alice"), "domains/example.com.toml", "syntax")
    fails(cli("account", "add", "z@example.com", "--password-stdin", input=PASSWORD), "syntax")
    assert tree_snapshot(root.path) == before
    assert f.read_text().endswith("[accounts.bob\n")


def test_broken_mailctl_toml(cli, root):
    cfg = root.config_file
    cfg.write_text(cfg.read_text().replace("[limits]", "[limits]\nmax_recipients = \"many\"\nbogus_key = 3"))
    r = run_cli(root, "config", "check")
    assert r.code == 1
    assert "mailctl.toml:" in r.err and "limits.max_recipients: must be an integer" in r.err
    assert "limits.bogus_key: unknown key" in r.err
    fails(cli("domain", "add", "example.com"), "mailctl.toml", "max_recipients")


def test_hand_edit_comments_survive_a_cli_write(cli, root, alice):
    f = root.domains_dir / "example.com.toml"
    f.write_text(f.read_text().replace("[accounts.alice]", "# Alice runs sales\n[accounts.alice]"))
    ok(cli("alias", "add", "sales@example.com", "alice"))
    assert "# Alice runs sales" in f.read_text()
    ok(cli("config", "check"))


def test_hand_edit_path_escape_refused(root, alice):
    f = root.domains_dir / "example.com.toml"
    f.write_text(f.read_text() + '\n[accounts."../../etc"]\npassword = ""\n')
    r = run_cli(root, "config", "check")
    assert r.code == 1 and 'accounts.../../etc' in r.err and "only letters" in r.err


# -- output for scripts ----------------------------------------------------------------

def test_json_and_no_ansi_on_a_pipe(root, alice):
    for args in (["domain", "list"], ["account", "list"], ["alias", "list"], ["list", "list"],
                 ["account", "show", "alice@example.com"], ["config", "show"]):
        plain = run_mailctl(root, *args)
        assert plain.returncode == 0, plain.stderr
        assert b"\x1b" not in plain.stdout, args
        js = run_mailctl(root, *args, "--json")
        json.loads(js.stdout)
    bad = run_mailctl(root, "account", "show", "nobody@example.com")
    assert bad.returncode == 1 and bad.stderr.count(b"\n") == 1 and b"\x1b" not in bad.stderr


def test_usage_errors_exit_2(root):
    assert run_mailctl(root, "account", "frobnicate").returncode == 2
    assert run_mailctl(root, "account", "quota", "a@b.com", "-5").returncode == 2


def test_password_prompt_on_a_terminal_asks_twice(root):
    import sys

    import pexpect
    assert run_cli(root, "domain", "add", "example.com").code == 0
    child = pexpect.spawn(sys.executable, ["-m", "mailctl", "--root", str(root.path), "account", "add",
                                           "tty@example.com"], timeout=30, encoding="utf-8")
    child.expect("Password: ")
    child.sendline(PASSWORD)
    child.expect("Repeat for confirmation: ")
    child.sendline("not-the-same-1")
    child.expect("do not match")
    child.expect("Password: ")
    child.sendline(PASSWORD)
    child.expect("Repeat for confirmation: ")
    child.sendline(PASSWORD)
    child.expect("account tty@example.com added")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    from engine.passwords import verify
    assert verify(Directory.load(root).account("tty@example.com").password, PASSWORD)
