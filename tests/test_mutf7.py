import pytest

from engine import mutf7
from engine.errors import InvalidInput


@pytest.mark.parametrize("text", [
    "INBOX", "Sent Items", "&", "A&B&&", "Entwürfe", "Éléments envoyés", "台北", "日本語/メール",
    "😀", "mixed 😀 and ä and &", "~!@#$%^*()_+-=[]{};'\\:\"|,<>?`", "",
])
def test_round_trip(text):
    assert mutf7.decode(mutf7.encode(text)) == text


@pytest.mark.parametrize("text, encoded", [
    # RFC 3501 §5.1.3 example
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("&", "&-"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("😀", "&2D3eAA-"),
    ("plain ascii", "plain ascii"),
    ("ä&ö", "&AOQ-&-&APY-"),
])
def test_known_encodings(text, encoded):
    assert mutf7.encode(text) == encoded
    assert mutf7.decode(encoded) == text


@pytest.mark.parametrize("bad, why", [
    ("&U,BTFw", "not terminated"),
    ("abc&", "not terminated"),
    ("&Jjo!-", "invalid base64"),
    ("&AGE-", "printable ASCII"),      # "a" must stand for itself
    ("&ACY-", "printable ASCII"),      # "&" must be "&-"
    ("&AAA-", "NUL"),
    ("&2D0-", "surrogate"),            # lone high surrogate
    ("&AOR-", "padding bits"),
    ("&AO-", "truncated"),
    ("&AOQ-&AOQ-", "adjacent"),        # must be one run
    ("tab\there", "not allowed"),
    ("ümlaut", "not allowed"),         # raw 8-bit is not mUTF-7
])
def test_invalid(bad, why):
    with pytest.raises(InvalidInput, match=why):
        mutf7.decode(bad)


def test_slash_not_in_alphabet():
    # mUTF-7 uses "," where base64 has "/"
    with pytest.raises(InvalidInput, match="invalid base64"):
        mutf7.decode("&U/BTFw-")


def test_encode_rejects_lone_surrogate():
    with pytest.raises(InvalidInput, match="surrogate"):
        mutf7.encode("\ud800")
