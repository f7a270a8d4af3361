"""The RFC 7208 test suite (rfc7208-tests.yml, release 2014.04, published by the OpenSPF
project with pyspf; its licence is tests/data/rfc7208-tests.LICENSE) run through our SPF
check (engine/mailauth/spfcheck.py, what the port 25 stage calls) against a real DNS
server on loopback serving each scenario's zone: every case, result against result.

The suite's explanation= expectations are not checked: our header carries the result and
pyspf's reason only as a comment (RFC 8601 needs no explanation).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dnsserver import DNSServer
from engine.mailauth import spfcheck

SUITE = Path(__file__).parent / "data" / "rfc7208-tests.yml"


def zone_of(zonedata: dict) -> dict:
    """The suite's zone (SPF records doubling as TXT unless TXT is given; 'NONE' for no
    record; TIMEOUT for types not listed) in tests/dnsserver.py's form."""
    zone: dict = {}
    for name, records in zonedata.items():
        entry: dict = {}
        spf_values, has_txt = [], False
        for r in records:
            if r == "TIMEOUT":
                entry["TIMEOUT"] = True
                continue
            (rtype, v), = r.items()
            if rtype == "TXT":
                has_txt = True
            if v == "NONE":
                continue
            if rtype in ("TXT", "SPF"):
                v = tuple(v) if isinstance(v, list) else v
                (spf_values if rtype == "SPF" else entry.setdefault("TXT", [])).append(v)
            elif rtype == "MX":
                entry.setdefault("MX", []).append((v[0], v[1]))
            elif rtype == "CNAME":
                entry["CNAME"] = v
            else:
                entry.setdefault(rtype, []).append(v)
        if spf_values and not has_txt:
            entry.setdefault("TXT", []).extend(spf_values)
        zone[name] = "TIMEOUT" if entry == {"TIMEOUT": True} else entry
    return zone


def cases():
    out = []
    for scenario in yaml.safe_load_all(SUITE.read_text()):
        for name, case in scenario["tests"].items():
            out.append(pytest.param(scenario["zonedata"], case, id=name))
    return out


@pytest.fixture(scope="module")
def dns_server():
    server = DNSServer({})
    yield server
    server.close()


@pytest.mark.parametrize("zonedata, case", cases())
def test_rfc7208_case(dns_server, zonedata, case):
    dns_server.zone.clear()
    for name, entry in zone_of(zonedata).items():
        dns_server.set(name, entry)
    resolver = dns_server.resolver()
    resolver.lifetime = resolver.timeout = 0.3
    got = spfcheck.check_spf(resolver, case["host"], case["mailfrom"], case["helo"])
    expected = case["result"] if isinstance(case["result"], list) else [case["result"]]
    assert got.result in expected, f"{case.get('spec')}: {got.result} ({got.reason}), expected {expected}"


def test_the_suite_is_complete():
    assert len(cases()) == 203
