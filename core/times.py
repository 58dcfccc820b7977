"""The one reading of a time that every command taking one uses.

`rewind --to`, `history --since` and whatever later takes a time go through
`parse_time`, so a time means the same thing everywhere: ISO-8601, with a UTC
offset or read in a zone that is named back to the user. Words PostgreSQL's
own timestamptz input accepts (now, today, yesterday, tomorrow, epoch,
infinity, allballs) are refused: a target must mean the same moment whenever
the command is run again, and epoch or infinity mean no moment anyone wants.
The SQL side (simtrail.parse_time) refuses the same words.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from simtrail.errors import SimtrailError

EXAMPLE = "2026-12-01T09:30:00+01:00"
REFUSED_WORDS = re.compile(
    r"^[+-]?(now|today|tomorrow|yesterday|epoch|infinity|allballs)$", re.IGNORECASE
)


class TimeInputError(SimtrailError):
    """A time the user typed that cannot be read as one fixed moment."""


class NotATimeError(TimeInputError):
    """Text that is no ISO-8601 time at all (a command may have other readings)."""


@dataclass(frozen=True)
class ParsedTime:
    value: dt.datetime  # always aware
    text: str  # as typed
    zone: str | None = None  # the zone it was read in, when it had no offset

    def warning(self) -> str | None:
        """What to tell the user on stderr when the zone was assumed."""
        if self.zone is None:
            return None
        return (
            f"warning: {self.text!r} has no UTC offset; read in time zone {self.zone}"
            f" as {self.value.isoformat()} (add an offset or pass --tz to choose)"
        )


def zone_info(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeInputError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC"
        ) from None


def parse_time(text: str, zone: str | Callable[[], str]) -> ParsedTime:
    """Read TEXT as one moment.

    `zone` (a name, or a function giving it, called only when needed) is
    where a time without an offset is read; the result says so, and a time
    that falls in a daylight-saving gap or fold of that zone is refused.
    """
    stripped = text.strip()
    if not stripped:
        raise TimeInputError(f"a time is required, e.g. {EXAMPLE}")
    if REFUSED_WORDS.match(stripped):
        raise TimeInputError(
            f"{stripped!r} is refused as a time: now, today, yesterday, tomorrow, epoch and"
            f" infinity are not fixed moments; give an ISO-8601 time, e.g. {EXAMPLE}"
        )
    try:
        value = dt.datetime.fromisoformat(stripped)
    except ValueError:
        raise NotATimeError(
            f"{stripped!r} is not an ISO-8601 time (e.g. {EXAMPLE})"
        ) from None
    if value.tzinfo is not None:
        return ParsedTime(value, stripped)
    name = zone if isinstance(zone, str) else zone()
    info = zone_info(name)
    first, second = value.replace(tzinfo=info, fold=0), value.replace(tzinfo=info, fold=1)
    if first.astimezone(dt.UTC).astimezone(info).replace(tzinfo=None) != value:
        raise TimeInputError(
            f"{stripped!r} does not exist in time zone {name} (a daylight-saving change"
            " skips it); add a UTC offset"
        )
    if first.utcoffset() != second.utcoffset():
        raise TimeInputError(
            f"{stripped!r} is ambiguous in time zone {name} (a daylight-saving change"
            " repeats it); add a UTC offset"
        )
    return ParsedTime(first, stripped, name)
