"""IMAP4rev2 (RFC 9051) beside IMAP4rev1: both are advertised, and a session is rev1
until its client says ENABLE IMAP4rev2 (RFC 9051 §6.3.1). What differs is held here as
one Revision per protocol, whose flags the commands consult (`self.rev`), so a rev1
session answers exactly as before.

What rev2 changes for us (RFC 9051 Appendix E):
- no \\Recent: no RECENT response, no \\Recent in FLAGS, STATUS RECENT and SEARCH
  NEW/OLD/RECENT are not in its grammar (BAD); SELECT's OK [UNSEEN n] is gone too, and
  SELECT/EXAMINE end with the mailbox's LIST line (§6.3.2) and say [CLOSED] whenever
  they close one (§7.1, rev1 only with QRESYNC);
- SEARCH answers ESEARCH (a SEARCH without RETURN is RETURN (ALL), §6.4.4);
- LIST is LIST-EXTENDED's (\\NonExistent for names that do not exist, §6.3.9);
- STATUS DELETED (§6.3.11);
- mailbox names are UTF-8 on the wire, not modified UTF-7 (§5.1, Appendix A), in
  quoted strings where they fit (§9 QUOTED-CHAR); an IMAP URL's names stay modified
  UTF-7 (CATENATE, appendcmd.py);
- DELETE of a mailbox with children is refused with [HASCHILDREN] (§6.3.5).
The messages a rev2 session sees first are still claimed as \\Recent (maildir/recent.py),
so a rev1 session beside it is told what RFC 3501 says: not recent to it.
Unchanged, and kept answered: LSUB (deprecated), CHECK (gone from rev2's grammar; it
does what NOOP does, and refusing it would only break a client with rev1 habits),
RFC822* FETCH items. The extensions rev2 folds in (NAMESPACE, UNSELECT, UIDPLUS,
ESEARCH, SEARCHRES, ENABLE, IDLE, SASL-IR, LIST-EXTENDED, LIST-STATUS, MOVE, LITERAL-
(LITERAL+ is its superset), BINARY, SPECIAL-USE, STATUS=SIZE) are in session.BASE_CAPS
for both; $Forwarded is a system flag there too (selected.SYSTEM_FLAGS), and $Junk,
$NotJunk, $Phishing and $MDNSent are keywords like any other.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import mutf7
from ..errors import InvalidInput
from . import listing
from .errors import bad

CAPABILITY = "IMAP4rev2"

# STATUS items of both (RFC 3501 §6.3.10, RFC 8438 SIZE, RFC 7162 HIGHESTMODSEQ)
_STATUS_COMMON = frozenset({"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE", "HIGHESTMODSEQ"})
_RECENT_KEYS = frozenset({"NEW", "OLD", "RECENT"})      # SEARCH keys that use \Recent


@dataclass(frozen=True)
class Revision:
    name: str
    recent: bool                 # \Recent and everything about it
    unseen_code: bool            # SELECT's OK [UNSEEN n]
    select_list: bool            # SELECT/EXAMINE send the mailbox's LIST line
    closed_always: bool          # OK [CLOSED] whenever SELECT closes the selected mailbox
    esearch: bool                # SEARCH without RETURN answers ESEARCH ALL
    list_extended: bool          # every LIST answers as an extended one
    haschildren_code: bool       # DELETE refused for children says [HASCHILDREN]
    utf8_names: bool             # mailbox names UTF-8 on the wire, not modified UTF-7
    status_items: frozenset      # STATUS items it knows

    def mailbox(self, name: str) -> bytes:
        """A mailbox name (Unicode) in a response, as this protocol writes it."""
        return listing.wire_astring(name, self.utf8_names)

    def read_name(self, text: str) -> str:
        """A mailbox argument as sent (INBOX in any case already made INBOX) as the
        Unicode name; InvalidInput for bad modified UTF-7."""
        if self.utf8_names:
            return text
        try:
            return mutf7.decode(text)
        except InvalidInput as e:
            raise InvalidInput(f"Invalid mailbox name: {e}") from None

    def check_search(self, nodes) -> None:
        """BAD for a SEARCH key this protocol does not have (rev2: NEW, OLD, RECENT)."""
        if not self.recent:
            kind = _recent_key(nodes)
            if kind:
                raise bad(f"{kind} is not a search key of IMAP4rev2 (it has no \\Recent)")


REV1 = Revision("IMAP4rev1", recent=True, unseen_code=True, select_list=False, closed_always=False,
                esearch=False, list_extended=False, haschildren_code=False, utf8_names=False,
                status_items=_STATUS_COMMON | {"RECENT"})
REV2 = Revision(CAPABILITY, recent=False, unseen_code=False, select_list=True, closed_always=True,
                esearch=True, list_extended=True, haschildren_code=True, utf8_names=True,
                status_items=_STATUS_COMMON | {"DELETED"})


def _recent_key(node) -> str | None:
    """The first NEW/OLD/RECENT key in a parsed search (search.parse's tuples and lists)."""
    if isinstance(node, list):
        for n in node:
            found = _recent_key(n)
            if found:
                return found
    elif isinstance(node, tuple) and node:
        if node[0] in _RECENT_KEYS:
            return node[0]
        for n in node[1:]:
            if isinstance(n, (tuple, list)):
                found = _recent_key(n)
                if found:
                    return found
    return None


async def enable(session) -> None:
    """ENABLE IMAP4rev2: from the next response on the session speaks rev2; a selected
    mailbox stops reporting \\Recent."""
    session.rev = REV2
    if session.selected is not None:
        session.selected.reports_recent = False
        session.selected.recent = set()
