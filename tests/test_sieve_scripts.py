"""The Sieve script store (engine/sieve/scripts.py) in Pigeonhole's layout, the parser's
errors with their line numbers, global before/after scripts and the runtime limits."""
from __future__ import annotations

import os

import pytest

from engine.errors import InvalidInput, NotFound
from engine.sieve import scripts
from engine.sieve.interp import Script
from engine.sieve.lexer import SieveError
from engine.sieve.message import SieveMessage
from engine.accept.sieving import run_scripts

MESSAGE = SieveMessage(b"From: a@example.com\r\nSubject: Invoice 7\r\n\r\nhi\r\n", "a@example.com", "bob@example.com")


def test_put_list_activate_rename_delete(tmp_path):
    home = tmp_path / "bob"
    home.mkdir()
    assert scripts.list_scripts(home) == []
    scripts.put_script(home, "main", 'require "fileinto";\nfileinto "A";\n')
    scripts.put_script(home, "spare", "keep;\n")
    scripts.activate(home, "main")
    assert os.readlink(home / ".dovecot.sieve") == "sieve/main.sieve"     # what Pigeonhole reads
    assert scripts.list_scripts(home) == [("main", True), ("spare", False)]
    with pytest.raises(InvalidInput):
        scripts.delete_script(home, "main")                   # the active one stays
    scripts.rename_script(home, "main", "filing")
    assert scripts.active_script(home) == ("filing", 'require "fileinto";\nfileinto "A";\n')
    scripts.activate(home, None)
    scripts.delete_script(home, "filing")
    assert scripts.list_scripts(home) == [("spare", False)]
    with pytest.raises(NotFound):
        scripts.activate(home, "gone")
    for bad in ("", ".hidden", "a/b", "x\n", "../up"):
        with pytest.raises(InvalidInput):
            scripts.put_script(home, bad, "keep;")


def test_a_script_with_an_error_is_refused_with_its_line(tmp_path):
    with pytest.raises(SieveError, match=r"^line 3: command 'fileinto' needs require"):
        scripts.put_script(tmp_path, "x", "keep;\n# fine\nfileinto \"A\";\n")
    with pytest.raises(SieveError, match=r"^line 2: header: missing argument"):
        Script('keep;\nif header :is "a" { keep; }\n')
    with pytest.raises(SieveError, match=r"^line 4: unterminated string"):
        Script('keep;\n\n\nfileinto "abc;\n')
    assert not (tmp_path / "sieve" / "x.sieve").exists()


def test_global_before_and_after_scripts_run_around_the_personal_one(tmp_path):
    root, home = tmp_path / "root", tmp_path / "root" / "mail" / "example.com" / "bob"
    (root / "sieve" / "before.d").mkdir(parents=True)
    (root / "sieve" / "after.d").mkdir(parents=True)
    home.mkdir(parents=True)
    (root / "sieve" / "before.d" / "10-flag.sieve").write_text('require "imap4flags";\naddflag "$Before";\n')
    (root / "sieve" / "after.d" / "90-archive.sieve").write_text('require ["fileinto", "copy"];\nfileinto :copy "Archive";\n')
    assert run_scripts(home, root, MESSAGE, lambda n: True).folders() == [("Archive", (), False), ("INBOX", (), False)]
    scripts.put_script(home, "main", 'require "fileinto";\nif header :contains "subject" "invoice" { fileinto "Invoices"; }\n')
    scripts.activate(home, "main")
    result = run_scripts(home, root, MESSAGE, lambda n: True)
    assert result.folders() == [("Invoices", (), False)]      # filed: the after script does not run


def test_global_scripts_kept_between_messages_are_read_again_after_any_change(tmp_path):
    """Global scripts are kept per process (read for every message they cost more than
    the rest of the stage); an edit in place, a rename over, a new file, a removal or a
    link put in their place is seen at the next message."""
    root = tmp_path / "root"
    before = root / "sieve" / "before.d"
    assert scripts.global_scripts(root, "before") == []           # no directory at all
    before.mkdir(parents=True)
    (before / "10-a.sieve").write_text("keep;\n")
    assert scripts.global_scripts(root, "before") == [("before.d/10-a.sieve", "keep;\n")]
    with open(before / "10-a.sieve", "w") as f:                     # in place: same inode, same dir
        f.write("stop;\n")
    assert scripts.global_scripts(root, "before") == [("before.d/10-a.sieve", "stop;\n")]
    (before / ".new").write_text("discard;\n")
    os.rename(before / ".new", before / "10-a.sieve")               # as an editor or atomic write does
    assert scripts.global_scripts(root, "before")[0][1] == "discard;\n"
    (before / "20-b.sieve").write_text("keep;\n")
    assert [n for n, _ in scripts.global_scripts(root, "before")] == ["before.d/10-a.sieve", "before.d/20-b.sieve"]
    (before / "10-a.sieve").unlink()
    assert [n for n, _ in scripts.global_scripts(root, "before")] == ["before.d/20-b.sieve"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "30-x.sieve").write_text("discard;\n")
    (before / "20-b.sieve").unlink()
    before.rmdir()
    before.symlink_to(elsewhere)                                    # never followed, and logged
    assert scripts.global_scripts(root, "before") == []


@pytest.mark.parametrize("text, error", [
    ("".join(f'redirect "r{n}@example.net";\n' for n in range(5)), "line 5: more than 4 redirects"),
    ('require "fileinto";\n' + "".join(f'fileinto "f{n}";\n' for n in range(40)), "more than 32 actions"),
    ('require "regex";\nif header :regex "subject" "(a*)*b" { discard; }\n', "nested quantifiers"),
    ('require ["regex", "variables"];\nset "v" "' + "x" * 40 + 'zy";\n'
     'if string :regex "${v}" "(x|xx)*(x|xx)*y" { discard; }\n', "took too long"),
    ('require "variables";\nset "v" "' + "x" * 4000 + '";\n'
     + ('if string :matches "${v}" "' + "*a" * 40 + '" { keep; }\n') * 20, "step limit"),
])
def test_limits_end_the_run_with_the_message_in_inbox(text, error):
    result = Script(text).run(MESSAGE)
    assert error in result.error
    assert result.actions == [] and result.folders() == [("INBOX", (), False)]


def test_compile_limits():
    with pytest.raises(SieveError, match="nested deeper"):
        Script("if true { " * 33 + "keep;" + " }" * 33)
    with pytest.raises(SieveError, match="larger than"):
        Script("#" * (600 * 1024))
    with pytest.raises(SieveError, match="string too long"):
        Script('keep; fileinto "' + "x" * 70_000 + '";')
