"""The date extension (RFC 5260): a date from a header field or now, in a zone, as the
parts tests compare ("year", "iso8601", "weekday" ...)."""
from __future__ import annotations

import datetime as dt
import re
from email.utils import parsedate_tz

from .lexer import SieveError

PARTS = ("year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601", "std11", "zone", "weekday")
_MJD_EPOCH = dt.date(1858, 11, 17)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def zone_of(text: str) -> dt.timezone:
    """'+0100' / '-0530' (RFC 5260 §4.1 :zone)."""
    m = re.fullmatch(r"([+-])([0-9]{2})([0-9]{2})", text)
    if not m or int(m.group(3)) > 59:
        raise SieveError(0, f"invalid zone {text!r}")
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return dt.timezone(dt.timedelta(minutes=-minutes if m.group(1) == "-" else minutes))


def parse_header_date(value: str, field: str = "") -> dt.datetime | None:
    if field.lower() == "received":           # its date follows the last ';' (RFC 5260 §4)
        value = value.rpartition(";")[2]
    parsed = parsedate_tz(value)
    if parsed is None:
        return None
    try:
        local = dt.datetime(*parsed[:6])
    except (ValueError, OverflowError):
        return None
    return local.replace(tzinfo=dt.timezone(dt.timedelta(seconds=parsed[9] or 0)))


def in_zone(when: dt.datetime, zone: str | None, original: bool) -> dt.datetime:
    if original:
        return when
    if zone is not None:
        return when.astimezone(zone_of(zone))
    return when.astimezone()          # the server's local zone (RFC 5260 §4)


def part(when: dt.datetime, name: str) -> str | None:
    off = when.utcoffset() or dt.timedelta(0)
    sign = "-" if off < dt.timedelta(0) else "+"
    mins = abs(int(off.total_seconds())) // 60
    zone = f"{sign}{mins // 60:02d}{mins % 60:02d}"
    if name == "year":
        return f"{when.year:04d}"
    if name == "month":
        return f"{when.month:02d}"
    if name == "day":
        return f"{when.day:02d}"
    if name == "date":
        return f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
    if name == "julian":
        return str((when.date() - _MJD_EPOCH).days)
    if name == "hour":
        return f"{when.hour:02d}"
    if name == "minute":
        return f"{when.minute:02d}"
    if name == "second":
        return f"{when.second:02d}"
    if name == "time":
        return f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    if name == "iso8601":
        return when.strftime("%Y-%m-%dT%H:%M:%S") + f"{zone[:3]}:{zone[3:]}"
    if name == "std11":
        return (f"{_DAYS[when.weekday()]}, {when.day:02d} {_MONTHS[when.month - 1]} {when.year:04d} "
                f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {zone}")
    if name == "zone":
        return zone
    if name == "weekday":
        return str((when.weekday() + 1) % 7)          # 0 = Sunday
    return None                      # an unknown part matches nothing (as Pigeonhole)
