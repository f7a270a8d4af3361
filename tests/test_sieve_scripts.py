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
