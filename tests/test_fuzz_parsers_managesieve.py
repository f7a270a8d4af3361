"""Property-based tests of ManageSieve's command reader (engine/managesieve/words.py, the
fuzzer of tests/test_fuzz_parsers*.py): whatever a client sends, a command comes out, or
BadCommand (answered NO) or TooBig (answered BYE), in linear time, and every literal the
client announced is consumed (the next command starts where it should); the strings the
server writes read back as they were."""
from __future__ import annotations

import asyncio

from hypothesis import example, given, strategies as st

from engine.managesieve.words import BadCommand, Command, TooBig, read_command, string
from helpers_fuzz import fuzz, in_cpu_time

CHARS = b'"\\{}+ \r\n\x00\xffAZaz09-_.:PUTSCRIPT'


def parse_all(data: bytes) -> list:
    """Every command in data, in order: a Command, or the exception's class."""
    async def run():
        reader = asyncio.StreamReader(limit=2 ** 20)
        reader.feed_data(data)
        reader.feed_eof()

        async def readline():
            try:
                return await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                return e.partial
        out = []
        while True:
            try:
                command = await read_command(readline, reader.readexactly)
            except (BadCommand, TooBig) as e:
                out.append(type(e))
                if isinstance(e, TooBig):
                    return out
                continue
            except asyncio.IncompleteReadError:
                return out
            if command is None:
                return out
            out.append(command)
    return asyncio.run(run())


@fuzz(400)
@given(st.binary(max_size=300) | st.lists(st.sampled_from([CHARS[i:i + 1] for i in range(len(CHARS))]),
                                           max_size=120).map(b"".join))
@example(b'PUTSCRIPT "a" {5+}\r\n\xff\xff\xff\xff\xff\r\nNOOP\r\n')
@example(b'PUTSCRIPT "a" {999999999999+}\r\n')
@example(b'"unclosed\r\nNOOP\r\n')
def test_any_input_gives_commands_or_clear_refusals(data):
    for item in in_cpu_time(2.0, parse_all, data):
        assert item in (BadCommand, TooBig) or (isinstance(item, Command) and all(isinstance(a, str) for a in item.args))


def test_a_refused_command_s_literal_is_read_and_the_next_command_follows():
    got = parse_all(b'PUTSCRIPT "a" {5+}\r\n\xff\xff\xff\xff\xff\r\nNOOP "t"\r\n')
    assert got[0] is BadCommand and got[1] == Command("NOOP", ["t"])
    got = parse_all(b'PUTSCRIPT "s" {7+}\r\nkeep;\r\n "x"\r\nLOGOUT\r\n')
    assert got == [Command("PUTSCRIPT", ["s", "keep;\r\n", "x"]), Command("LOGOUT", [])]


@fuzz(300)
@given(st.text(max_size=200))
def test_the_server_s_strings_read_back(text):
    got = parse_all(b"NOOP " + string(text) + b"\r\n")
    if "\x00" in text and not string(text).startswith(b"{"):
        return
    assert got == [Command("NOOP", [text])]
