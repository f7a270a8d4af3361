"""Property tests of IMAP4rev2's mailbox names (engine/imap/rev2.py, RFC 9051 §5.1): any
text a rev2 client sends as a name is refused or becomes a folder name that the replies
write back so that a parser reads the same name, and that a rev1 session reads, in
modified UTF-7, as the same folder."""
from __future__ import annotations

from hypothesis import example, given, strategies as st

from engine.errors import InvalidInput
from engine.imap.parser import as_text, tokenize
from engine.imap.rev2 import REV1, REV2
from engine.maildir import canonical_name
from helpers_fuzz import fuzz

NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40) | \
    st.text(st.sampled_from('aZ&-/."\\ %*\r\n\0ü日\u2028\x85'), min_size=1, max_size=20)


@fuzz(3000)
@given(NAMES)
@example("Tom & Jerry/日本語")
@example('say "hi"\\')
@example("&-")
def test_rev2_names_round_trip_through_a_reply(text):
    try:
        name = canonical_name(REV2.read_name(text))
    except InvalidInput:
        return
    for rev in (REV2, REV1):
        wire = rev.mailbox(name)
        tokens = tokenize(b"* LIST () \"/\" " + wire)
        assert len(tokens) == 5, (name, wire)
        read = as_text(tokens[4])
        assert canonical_name(rev.read_name(read)) == name, (rev.name, name, wire)
        assert rev is REV2 or wire.isascii()           # rev1: modified UTF-7, 7-bit
