"""The TOML patcher: the text parses to the new data, and untouched lines stay as they were."""
from __future__ import annotations

import copy

from hypothesis import given, settings, strategies as st

from engine.tomlsyntax import tomllib
from engine.tomlpatch import patch

TEXT = """\
# top comment
enabled = true
domain_aliases = [
  "a.org",   # old name
]
catch_all = ""

# Alice runs sales
[accounts.alice]
password = "x"
name = "Alice"   # display
quota_mb = 0

# Bob
[accounts.bob]
password = "y"

# the aliases
[aliases.sales]
targets = ["alice"]
"""


def change(text, fn):
    old = tomllib.loads(text)
    new = copy.deepcopy(old)
    fn(new)
    out = patch(text, old, new)
    assert tomllib.loads(out) == new
    return out


def test_add_modify_remove_keep_comments():
    def fn(d):
        d["accounts"]["carol"] = {"password": "z", "quota_mb": 5}
        d["accounts"]["alice"]["quota_mb"] = 10
        del d["accounts"]["bob"]
        d["domain_aliases"].append("b.org")
        d["lists"] = {"team": {"mode": "public", "members": []}}
    out = change(TEXT, fn)
    for kept in ("# top comment", "# Alice runs sales", 'name = "Alice"   # display', "# the aliases"):
        assert kept in out
    assert "# Bob" not in out and "[accounts.bob]" not in out and "[lists]\n" not in out


def test_unusual_shapes_fall_back_and_stay_correct():
    inline = 'enabled = true\naccounts = { alice = { password = "x" } }\n'
    change(inline, lambda d: d["accounts"].__setitem__("bob", {"password": "y"}))
    dotted = 'enabled = true\n[accounts]\nalice.password = "x"\n'
    change(dotted, lambda d: d["accounts"]["alice"].__setitem__("password", "z"))
    arrays = '[[things]]\nname = "a"\n'
    change(arrays, lambda d: d["things"].append({"name": "b"}))
    no_newline = 'enabled = true'
    change(no_newline, lambda d: d.__setitem__("catch_all", "x@y.org"))


def test_quoted_names():
    out = change(TEXT, lambda d: d["accounts"].__setitem__("john.doe", {"password": "q"}))
    assert '[accounts."john.doe"]' in out
    change(out, lambda d: d["accounts"].pop("john.doe"))


names = st.from_regex(r"[a-z][a-z0-9.\-]{0,8}", fullmatch=True)
values = st.one_of(st.booleans(), st.integers(-5, 10**6), st.text(max_size=12),
                   st.lists(st.text(max_size=6), max_size=3))
entries = st.dictionaries(st.sampled_from(["password", "name", "quota_mb", "enabled", "forward"]), values, max_size=5)


@settings(max_examples=150, deadline=None)
@given(before=st.dictionaries(names, entries, max_size=5), after=st.dictionaries(names, entries, max_size=5),
       top=values)
def test_any_change_of_entries_round_trips(before, after, top):
    import tomli_w
    text = tomli_w.dumps({"enabled": True, "accounts": before}) if before else "enabled = true\n"
    old = tomllib.loads(text)
    new = {"enabled": True, "catch_all": top, "accounts": after} if after else {"enabled": True, "catch_all": top}
    assert tomllib.loads(patch(text, old, new)) == new
