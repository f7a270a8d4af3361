"""resolve(address): every kind of recipient, and every rejection with its reply text."""
from __future__ import annotations

import pytest

from engine import directory_edit as edit
from engine.directory import Directory
from engine.errors import ConfigError, InvalidInput, MailError

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.fixture
def world(root, settings):
    edit.add_domain(root, settings, "example.com")
    edit.add_domain(root, settings, "other.org")
    edit.add_domain_alias(root, settings, "example.com", "example.net")
    for a in ("alice@example.com", "bob@example.com", "carol@other.org", "dave@example.com"):
        edit.add_account(root, settings, a, HASH)
    edit.add_alias(root, settings, "sales@example.com", ["alice", "carol@other.org", "ext@far.example"])
    edit.add_list(root, settings, "all@example.com", "public", members=["alice", "bob", "friend@far.example"])
    edit.add_list(root, settings, "staff@example.com", "members", members=["alice", "bob"])
    edit.add_list(root, settings, "news@example.com", "announce", sender="boss@example.com", members=["bob"])
    edit.set_forward(root, settings, "dave@example.com", ["dave@far.example"], keep_copy=False)
    edit.set_account(root, settings, "bob@example.com", enabled=True)
    return root


def resolve(root, settings, address, sender=None):
    return Directory.load(root, settings).resolve(address, sender)


def mailboxes(res):
    return sorted(a.address for a in res.mailboxes)


def test_account_case_insensitive_and_domain_alias(world, settings):
    for addr in ("alice@example.com", "ALICE@Example.COM", "alice@example.net", "Alice@EXAMPLE.NET"):
        res = resolve(world, settings, addr)
        assert res.ok and mailboxes(res) == ["alice@example.com"] and res.local_domain


def test_alias_to_local_and_external(world, settings):
    res = resolve(world, settings, "sales@example.com")
    assert mailboxes(res) == ["alice@example.com", "carol@other.org"]
    assert res.external == ["ext@far.example"]


def test_lists_and_their_modes(world, settings):
    res = resolve(world, settings, "all@example.com", "anyone@x.org")
    assert mailboxes(res) == ["alice@example.com", "bob@example.com"] and res.external == ["friend@far.example"]
    assert str(resolve(world, settings, "staff@example.com", "anyone@x.org").rejection) == "550 5.7.1 Not authorized"
    assert resolve(world, settings, "staff@example.com", "Bob@example.com").ok
    assert str(resolve(world, settings, "news@example.com", "bob@example.com").rejection) == "550 5.7.1 Not authorized"
    assert mailboxes(resolve(world, settings, "news@example.com", "boss@example.com")) == ["bob@example.com"]


def test_forward_without_copy(world, settings):
    res = resolve(world, settings, "dave@example.com")
    assert res.mailboxes == [] and res.external == ["dave@far.example"]


def test_foreign_domain_is_external_not_rejected(world, settings):
    res = resolve(world, settings, "someone@far.example")
    assert res.ok and not res.local_domain and res.external == ["someone@far.example"]


def test_rejections_carry_reference_texts(world, root, settings):
    assert str(resolve(world, settings, "nobody@example.com").rejection) == "550 5.1.1 Unknown User"
    edit.set_account(root, settings, "bob@example.com", enabled=False)
    assert str(resolve(world, settings, "bob@example.com").rejection) == "550 5.2.1 Account Is Not Active"
    edit.set_alias_enabled(root, settings, "sales@example.com", False)
    assert str(resolve(world, settings, "sales@example.com").rejection) == "550 5.2.1 Alias Is Not Active"
    edit.set_list(root, settings, "all@example.com", enabled=False)
    assert str(resolve(world, settings, "all@example.com").rejection) == "550 5.2.1 Distribution List Not Active"
    edit.set_domain(root, settings, "other.org", enabled=False)
    assert str(resolve(world, settings, "carol@other.org").rejection) == "550 5.2.1 Domain Has Been Disabled"
    for bad in ("a b@example.com", "../x@example.com", "x@-bad-.com", "x" * 300 + "@example.com", "a\x00@example.com",
                "user@[127.0.0.1]", "user@example.com."):
        assert str(resolve(world, settings, bad).rejection) == "501 5.1.3 A Valid Address Is Required"


def test_relay_tricks_never_leave_the_domain(world, settings):
    for trick in ("user%far.example@example.com", "far.example!user@example.com"):
        res = resolve(world, settings, trick)
        assert str(res.rejection) == "550 5.1.1 Unknown User" and res.external == []


def test_catch_all(world, root, settings):
    edit.set_domain(root, settings, "example.com", catch_all="alice")
    assert mailboxes(resolve(world, settings, "whoever@example.com")) == ["alice@example.com"]
    with pytest.raises(MailError, match="ghost@example.com: Unknown User"):
        edit.set_domain(root, settings, "example.com", catch_all="ghost@example.com")
    f = root.domains_dir / "example.com.toml"           # a hand edit can still point it nowhere
    f.write_text(f.read_text().replace('catch_all = "alice@example.com"', 'catch_all = "ghost@example.com"'))
    with pytest.raises(ConfigError, match="catch_all: ghost@example.com: Unknown User"):
        Directory.load(root, settings)
    assert str(Directory.load(root, settings, strict=False).resolve("whoever@example.com").rejection).startswith(
        "550 5.4.6 Mail Server Configuration Error. Too Many Recursive Forwards")


def test_plus_addressing(world, root, settings):
    assert not resolve(world, settings, "alice+tag@example.com").ok
    cfg = root.config_file
    cfg.write_text(cfg.read_text().replace("[relay]", '[relay]\nrecipient_delimiter = "+"'))
    from engine import settings as settings_mod
    s2 = settings_mod.load(cfg)
    assert mailboxes(Directory.load(root, s2).resolve("alice+tag@example.com")) == ["alice@example.com"]


def test_loops_in_hand_edits_are_reported_and_rejected(world, root, settings):
    f = root.domains_dir / "example.com.toml"
    f.write_text(f.read_text() + '\n[aliases.x]\ntargets = ["y"]\n[aliases.y]\ntargets = ["x"]\n')
    with pytest.raises(ConfigError) as e:
        Directory.load(root, settings)
    assert any("loop: x@example.com -> y@example.com -> x@example.com" in p for p in e.value.problems)
    lenient = Directory.load(root, settings, strict=False)
    assert "Too Many Recursive Forwards" in str(lenient.resolve("x@example.com").rejection)


def test_depth_limit(root, settings):
    edit.add_domain(root, settings, "deep.org")
    edit.add_account(root, settings, "end@deep.org", HASH)
    prev = "end"
    for i in range(12):
        edit.add_alias(root, settings, f"a{i}@deep.org", [prev]) if i < 10 else None
        prev = f"a{i}"
    assert Directory.load(root, settings).resolve("a9@deep.org").ok
    with pytest.raises(InvalidInput, match="max_forward_depth|hops"):
        try:
            edit.add_alias(root, settings, "a10@deep.org", ["a9"])
            edit.add_alias(root, settings, "a11@deep.org", ["a10"])
        except ConfigError as e:
            raise InvalidInput(str(e)) from e


def test_aliases_per_address_limit(root, settings):
    cfg = root.config_file
    cfg.write_text(cfg.read_text().replace("[limits]", "[limits]\nmax_aliases_per_address = 2"))
    from engine import settings as settings_mod
    s2 = settings_mod.load(cfg)
    edit.add_domain(root, s2, "lim.org")
    edit.add_account(root, s2, "t@lim.org", HASH)
    edit.add_alias(root, s2, "a1@lim.org", ["t"])
    edit.add_alias(root, s2, "a2@lim.org", ["t"])
    with pytest.raises(InvalidInput, match="max_aliases_per_address"):
        edit.add_alias(root, s2, "a3@lim.org", ["t"])


def test_resolution_speed_sanity(world, settings, root):
    d = Directory.load(root, settings)
    import time
    t = time.perf_counter()
    for _ in range(2000):
        d.resolve("alice@example.com")
    assert time.perf_counter() - t < 5   # the real figure is in bench/directory.py
