"""Property-based tests of signature placing (engine/signatures.py, the fuzzer of
tests/test_fuzz_parsers*.py): whatever a user submits, a signed message or None comes out,
never an exception, in linear time; the signature text is in it; and bytes outside the
changed parts (an attachment here) stay as they were."""
from __future__ import annotations

from hypothesis import example, given, strategies as st

from engine.signatures import add
from helpers_fuzz import fuzz, in_cpu_time

PIECES = [b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: text/plain; charset=utf-8\r\n",
          b"Content-Type: text/html\r\n", b"Content-Transfer-Encoding: base64\r\n",
          b"Content-Transfer-Encoding: quoted-printable\r\n", b"\r\n", b"--b\r\n", b"--b--\r\n", b"=C3=A9 =\r\n",
          b"aGVsbG8=\r\n", b"</body>", b"\xff\xfe", b"charset=x-unknown\r\n", b"hello\r\n",
          b"Content-Disposition: attachment\r\n"]
ATTACHMENT = (b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
              b"AAECAwQFBgc=\r\n")


@fuzz(400)
@given(st.binary(max_size=300) | st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join))
@example(b"Content-Type: text/plain; charset=x-unknown\r\n\r\nhello\r\n")
@example(b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64\r\n")
def test_any_message_is_signed_or_left_alone(data):
    out = in_cpu_time(2.0, add, data, "Bob ☺", "<b>Bob</b>")
    assert out is None or isinstance(out, bytes)


@fuzz(200)
@given(st.text(max_size=200), st.sampled_from(["utf-8", "us-ascii", "iso-8859-1"]),
       st.sampled_from(["7bit", "8bit", "base64", "quoted-printable"]))
def test_the_text_part_gets_it_and_the_attachment_stays(body, charset, cte):
    import base64
    import quopri
    raw = body.encode("utf-8")
    if charset != "utf-8":
        try:
            raw = body.encode(charset)
        except UnicodeEncodeError:
            return
    encoded = {"base64": base64.encodebytes(raw), "quoted-printable": quopri.encodestring(raw)}.get(cte, raw)
    if cte in ("7bit", "8bit") and (b"\r" in raw or b"\n--b" in b"\n" + raw):
        return
    message = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset="
               + charset.encode() + b"\r\nContent-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n"
               + encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n" + ATTACHMENT + b"--b--\r\n")
    out = add(message, "Signed by Bob ☺", "")
    assert out is not None and out.endswith(ATTACHMENT + b"--b--\r\n")
    import email
    import email.policy
    first = email.message_from_bytes(out, policy=email.policy.default).get_body(("plain",))
    assert "Signed by Bob ☺" in first.get_content()
