"""Property-based tests of `mailctl rule`'s parsers (engine/sieve/rules.py: --if and --then)
and of the reader of mailctl's generated Sieve sections (engine/sieve/generated.py), which
reads back scripts a user may have edited by hand. How to run a long version: see
tests/test_fuzz_parsers.py."""
from __future__ import annotations

import pytest
from hypothesis import example, given, strategies as st

from engine.errors import InvalidInput
from engine.sieve import generated, rules
from engine.sieve.interp import Script
from helpers_fuzz import fuzz

WORDS = st.sampled_from(["from", "to", "cc", "subject", "body", "size", "recipient", "header:X-Tag", "header:",
                         "header:a b", "not", "NOT", "is", "equals", "contains", "matches", "regex", "over",
                         "under", "10K", "5m", "999999999999", "1.5K", '"invoice"', "'a b'", '"un\\"closed',
                         "\\Seen", "*?*", "[a-", "(x)+$", "é", "\\", '"', "'", "", " ", "move", "copy", "delete",
                         "forward", "forward-only", "flag", "reply", "set-header", "stop", "Archive/%YEAR%",
                         "INBOX", "'a\"b'", "'c\\\\d'", "../x", "a/b", "a@b.example", "x@", "Received", "X-Rule", "yes", "\\Flagged"])
TEXTS = st.one_of(st.lists(WORDS, max_size=5).map(" ".join), st.text(max_size=40))


@fuzz(400)
@given(TEXTS)
@example('subject contains "invoice"')
@example('size over 10K')
@example('header:X-Tag not regex "(a"')
def test_a_condition_parses_or_is_refused_and_parses_to_what_sieve_takes(text):
    try:
        cond = rules.parse_condition(text)
    except InvalidInput as e:
        assert str(e).startswith("--if ") and "Traceback" not in str(e)
        return
    assert set(cond) == {"field", "op", "value", "not"}
    assert cond["op"] in rules.OPERATORS and cond["op"] != "equals"


@fuzz(400)
@given(TEXTS)
@example("move Archive/%YEAR%")
@example("set-header X-Rule yes")
@example("forward a@b.example")
def test_an_action_parses_or_is_refused(text):
    try:
        action = rules.parse_action(text)
    except InvalidInput as e:
        assert str(e).startswith("--then ") or "folder" in str(e).lower() or "name" in str(e).lower()
        return
    assert action["do"] in ("move", "copy", "delete", "forward", "forward-only", "flag", "reply", "set-header",
                            "stop")


@pytest.fixture(scope="module")
def root_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("rules")


@fuzz(200)
@given(st.lists(TEXTS, min_size=1, max_size=3), st.lists(TEXTS, min_size=1, max_size=3), st.booleans())
@example(["subject contains 'a\"b\\\\c'"], ["set-header X-Rule 'say \"hi\"'"], False)
def test_rules_that_parse_are_written_as_compiling_sieve_and_read_back_as_given(root_dir, ifs, thens, any_):
    try:
        conds = [rules.parse_condition(t) for t in ifs]
        acts = [rules.parse_action(t) for t in thens]
    except InvalidInput:
        return
    ruleset = rules.RuleSet(root_path=root_dir)
    for n in range(len(ruleset.list()), 0, -1):
        ruleset.remove(n)
    assert ruleset.add(ifs, thens, any_) == 1
    assert ruleset.list() == [{"if": conds, "any": any_, "then": acts}]
    Script((root_dir / "sieve" / "before.d" / rules.GLOBAL_SCRIPT).read_text())       # it compiles


USER_LINES = st.lists(st.sampled_from(['require "fileinto";', 'require ["imap4flags"];', "keep;", "stop;",
                                      'if header :contains "subject" "x" { fileinto "X"; }', "# a comment",
                                      "", "/* a", "*/", "# BEGIN mailctl rules (", "# END mailctl rules",
                                      "# mailctl-rule {}", '# mailctl-rule {"if": 1}']), max_size=8)


@fuzz(300)
@given(USER_LINES, st.lists(st.sampled_from(["keep;", "stop;", '# mailctl-rule {"a": 1}']), max_size=3))
def test_a_section_put_into_any_script_reads_back_and_comes_out_again(user, body):
    text = "\n".join(user) + "\n"
    try:
        new = generated.edited(text, "rules", ["fileinto"], body)
    except InvalidInput:
        return                                     # the user's script does not compile: refused, not mangled
    assert generated.section_lines(new, "rules") == body
    removed = generated.edited(new, "rules", [], None)
    assert generated.section_lines(removed, "rules") is None
    assert "BEGIN mailctl rules (" not in removed.replace("# BEGIN mailctl rules (\n", "")


@fuzz(300)
@given(st.lists(st.one_of(st.text(max_size=60), st.sampled_from(['# mailctl-rule {"if": [], "any": false, "then": []}',
                                                                 '# mailctl-rule {"if": [{"field": 1}]}',
                                                                 '# mailctl-rule [1, 2]', "# mailctl-rule null"])),
                max_size=6))
def test_a_hand_edited_rules_section_reads_as_rules_or_a_clear_error(root_dir, lines):
    begin = "# BEGIN mailctl rules (written by mailctl; change it with `mailctl rules`)"
    path = root_dir / "sieve" / "before.d" / rules.GLOBAL_SCRIPT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([begin, *(line.replace("\n", " ").replace("\r", " ") for line in lines),
                               "# END mailctl rules"]) + "\n")
    try:
        found = rules.RuleSet(root_path=root_dir).list()
    except InvalidInput as e:
        assert "edited by hand" in str(e)
        return
    assert all(isinstance(r, dict) for r in found)
