"""The IMAP commands by family (engine/imap/commands.py and the modules it puts
together): each command the session dispatches has one home, and the session provides
everything the families declare they rely on (engine/imap/commandbase.py)."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

from engine.imap import commandbase
from engine.imap.appendcmd import AppendCommand
from engine.imap.aclcmd import AclCommands
from engine.imap.commandbase import CommandBase
from engine.imap.commands import Commands
from engine.imap.fetchcmd import FetchCommand
from engine.imap.general import GeneralCommands
from engine.imap.mailboxes import MailboxCommands
from engine.imap.messages import MessageCommands
from engine.imap.metadatacmd import MetadataCommands
from engine.imap.searchcmd import SearchCommand
from engine.imap.session import ImapSession

FAMILIES = [GeneralCommands, MailboxCommands, MessageCommands, AppendCommand, FetchCommand, SearchCommand,
            MetadataCommands, AclCommands]
HOMES = FAMILIES + [Commands, ImapSession]      # Commands: UID; the session: LOGIN & co.
STATES = {"any", "noauth", "auth", "selected"}


def test_every_command_has_one_home_and_a_state():
    commands = [n for n in dir(ImapSession) if n.startswith("cmd_")]
    assert "cmd_FETCH" in commands and "cmd_LOGIN" in commands and "cmd_UID" in commands
    for name in commands:
        homes = [c.__name__ for c in HOMES if name in vars(c)]
        assert len(homes) == 1, f"{name} is defined in {homes or 'no family'}"
        assert getattr(getattr(ImapSession, name), "state", None) in STATES, f"{name} has no state"


def test_no_two_families_define_the_same_name():
    """A family's helper of the same name as another's would shadow it in the session."""
    owners: dict[str, list[str]] = {}
    for family in FAMILIES:
        for name in vars(family):
            if not name.startswith("__"):
                owners.setdefault(name, []).append(family.__name__)
    assert {n: f for n, f in owners.items() if len(f) > 1} == {}


def test_the_families_are_mixed_into_the_session():
    for family in FAMILIES:
        assert issubclass(family, CommandBase)
        assert issubclass(ImapSession, family)


def test_the_session_provides_what_the_families_rely_on():
    declared = [n for n, f in vars(CommandBase).items()
                if inspect.isfunction(f) and "raise NotImplementedError" in inspect.getsource(f)]
    assert "send" in declared and "append_limit" in declared
    for name in declared:
        assert name in vars(ImapSession), f"ImapSession does not implement {name}"

    class Writer:
        def get_extra_info(self, name):
            return ("127.0.0.1", 1)
    session = ImapSession(None, "imap", None, Writer(), "starttls")
    for name in CommandBase.__annotations__:
        assert hasattr(session, name), f"ImapSession does not set {name}"


def test_the_families_do_not_import_the_session():
    """The session imports the commands, never the other way round (no import circle)."""
    here = Path(commandbase.__file__).parent
    for family in FAMILIES + [Commands, CommandBase]:
        path = here / (family.__module__.rsplit(".", 1)[1] + ".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module not in ("session", "engine.imap.session"), path.name
