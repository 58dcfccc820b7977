"""The clone benchmark's numbers as shown: medians, bounds for runs that were
cancelled, ratios, and the targets of issue #9 item 10 with how far each is."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.clone_measure import SizeResult
from bench.report import DASH, X, median, paired_ratio

FASTER_THAN_USER = 20.0
FLOOR_FACTOR = 2.0
ROWS_PER_SECOND = 50_000


@dataclass(frozen=True)
class Value:
    """A number, or a bound on it (sign ">" or "<"), or none (nan)."""

    value: float
    sign: str = ""

    @property
    def known(self) -> bool:
        return self.value == self.value

    def show(self, fmt: str, unit: str = "") -> str:
        if not self.known:
            return DASH
        return f"{self.sign + ' ' if self.sign else ''}{format(self.value, fmt)}{unit}"

    def at_least(self, limit: float) -> bool:
        """Surely ≥ limit."""
        return self.known and self.sign in ("", ">") and self.value >= limit

    def at_most(self, limit: float) -> bool:
        """Surely ≤ limit."""
        return self.known and self.sign in ("", "<") and self.value <= limit


def seconds(r: SizeResult, key: str, cap: float) -> Value:
    if r.seconds.get(key):
        return Value(median(r.seconds[key]))
    if key in r.cancelled:
        return Value(cap, ">")
    return Value(float("nan"))


def cell(r: SizeResult, key: str, cap: float) -> str:
    if key in r.skipped or key in r.limited:
        return "not run"
    return seconds(r, key, cap).show(".3f")


def ratio(r: SizeResult, top: str, bottom: str, cap: float) -> Value:
    """top/bottom: paired per repeat where both ran every repeat, else of medians."""
    a, b = seconds(r, top, cap), seconds(r, bottom, cap)
    if not (a.known and b.known) or (a.sign and b.sign):
        return Value(float("nan"))
    ta, tb = r.seconds.get(top, []), r.seconds.get(bottom, [])
    if not a.sign and not b.sign and len(ta) == len(tb) > 1:
        return Value(paired_ratio(ta, tb))
    return Value(a.value / b.value, ">" if a.sign else "<" if b.sign else "")


def rate(r: SizeResult, key: str, cap: float) -> Value:
    s = seconds(r, key, cap)
    return Value(r.total / s.value, "<" if s.sign else "") if s.known else s


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _worst(
    results: list[SizeResult], values: list[Value], good: bool, low_is_bad: bool
) -> tuple[str, bool]:
    """The worst size's value and whether the target holds at every size."""
    known = [(r, v) for r, v in zip(results, values, strict=True) if v.known]
    unknown = [r for r, v in zip(results, values, strict=True) if not v.known]
    if not known:
        return "not measured", False
    r, v = (min if low_is_bad else max)(known, key=lambda x: x[1].value)
    text = f"{v.show('.2f' if not low_is_bad else '.1f', X)} at {r.total:,} rows"
    if unknown:
        text += "; not measured at " + ", ".join(f"{u.total:,}" for u in unknown) + " rows"
    return text, good and not unknown


def _reached(results: list[SizeResult], cap: float) -> list[tuple[str, bool]]:
    """Per target, the worst size's value and whether it holds at every size."""
    vs_user = [ratio(r, "user", "simtrail", cap) for r in results]
    written = [ratio(r, "user_as_written", "simtrail", cap) for r in results]
    written_at = [(r, v) for r, v in zip(results, written, strict=True) if v.known]
    vs_floor = [ratio(r, "simtrail", "floor", cap) for r in results]
    vs_replica = [ratio(r, "simtrail", "floor_replica", cap) for r in results]
    speeds = [rate(r, "simtrail", cap) for r in results]
    known = [(r, v) for r, v in zip(results, speeds, strict=True) if v.known]
    slowest = min(known, key=lambda x: x[1].value) if known else None
    return [
        _worst(
            results, vs_user, all(v.at_least(FASTER_THAN_USER) for v in vs_user), low_is_bad=True
        ),
        (
            f"{written_at[0][1].show('.1f', X)} at {written_at[0][0].total:,} rows"
            if written_at
            else "not measured",
            bool(written_at) and written_at[0][1].at_least(FASTER_THAN_USER),
        ),
        _worst(results, vs_floor, all(v.at_most(FLOOR_FACTOR) for v in vs_floor), low_is_bad=False),
        _worst(
            results,
            vs_replica,
            all(v.at_most(FLOOR_FACTOR) for v in vs_replica),
            low_is_bad=False,
        ),
        (
            f"{slowest[1].show(',.0f')} rows/s at {slowest[0].total:,} rows"
            if slowest
            else "not measured",
            len(known) == len(results) and all(v.at_least(ROWS_PER_SECOND) for _, v in known),
        ),
    ]


def targets(results: list[SizeResult], cap: float) -> list[str]:
    if not results:
        return []
    wall = _reached(results, cap)
    # The same on backend CPU time, which the neighbours' load moves far less.
    on_cpu = (
        _reached([dataclasses.replace(r, seconds=r.cpu, cancelled=set()) for r in results], cap)
        if all(r.cpu.get("simtrail") for r in results)
        else None
    )
    names = [
        f"≥ {FASTER_THAN_USER:.0f}{X} faster than (a)",
        "… than (a) as written, at the user's class size",
        f"≤ {FLOOR_FACTOR:.0f}{X} (b), capture on",
        f"… and ≤ {FLOOR_FACTOR:.0f}{X} (b) replica, the clone's own trigger set",
        f"≥ {ROWS_PER_SECOND:,} rows/s",
    ]
    out = [
        "### Targets",
        "",
        "Met or not by wall-clock medians; the same computed on backend CPU time beside them.",
        "",
        "| target | reached, wall-clock (worst size) | met | reached, backend CPU | met |",
        "|---|---|---|---|---|",
    ]
    for i, name in enumerate(names):
        cpu = f"{on_cpu[i][0]} | {_met(on_cpu[i][1])}" if on_cpu else f"{DASH} | {DASH}"
        out.append(f"| {name} | {wall[i][0]} | {_met(wall[i][1])} | {cpu} |")
    out.append("")
    misses = _misses(
        results,
        cap,
        [ratio(r, "user", "simtrail", cap) for r in results],
        [ratio(r, "simtrail", "floor", cap) for r in results],
        [rate(r, "simtrail", cap) for r in results],
    )
    if misses:
        out += ["Targets missed (wall-clock), by how much:", "", *misses, ""]
    return out


def _misses(
    results: list[SizeResult],
    cap: float,
    vs_user: list[Value],
    vs_floor: list[Value],
    speeds: list[Value],
) -> list[str]:
    out = []
    for r in results:
        if "simtrail" in r.skipped:
            out.append(
                f"- **{r.total:,} rows**: simtrail was not run: about "
                f"{r.skipped['simtrail']:,.0f} s expected from the smaller sizes, past the "
                f"{cap:.0f} s a run may take."
            )
        elif "simtrail" in r.cancelled:
            out.append(f"- **{r.total:,} rows**: simtrail's run was cancelled after {cap:.0f} s.")
    for r, v in zip(results, vs_user, strict=True):
        if v.known and not v.at_least(FASTER_THAN_USER):
            allowed = seconds(r, "user", cap).value / FASTER_THAN_USER
            took = seconds(r, "simtrail", cap).show(".3f")
            out.append(
                f"- **(a), {r.total:,} rows**: {v.show('.1f', X)} faster, not "
                f"{FASTER_THAN_USER:.0f}{X}: simtrail took {took} s "
                f"where the target allows {allowed:.3f} s. The floor with capture (b) is "
                f"{ratio(r, 'user', 'floor', cap).show('.1f', X)} faster than (a), (b) replica "
                f"{ratio(r, 'user', 'floor_replica', cap).show('.1f', X)}, (b) bare "
                f"{ratio(r, 'user', 'floor_bare', cap).show('.1f', X)}."
            )
    for r, v in zip(results, vs_floor, strict=True):
        if v.known and not v.at_most(FLOOR_FACTOR):
            out.append(
                f"- **(b), {r.total:,} rows**: simtrail took {v.show('.2f', X)} the floor's time, "
                f"{v.value / FLOOR_FACTOR:.2f}{X} the {FLOOR_FACTOR:.0f}{X} allowed "
                f"({ratio(r, 'simtrail', 'floor_replica', cap).show('.2f', X)} (b) replica)."
            )
    for r, v in zip(results, speeds, strict=True):
        if v.known and not v.at_least(ROWS_PER_SECOND):
            bare = rate(r, "floor_bare", cap)
            replica = rate(r, "floor_replica", cap)
            capture = (
                f"; with capture on (b replica) at {replica.show(',.0f')}, so capture alone costs "
                f"{1e6 / replica.value - 1e6 / bare.value:.1f} µs of the "
                f"{1e6 / ROWS_PER_SECOND:.0f} µs per row the target allows"
                if bare.known and replica.known and not bare.sign and not replica.sign
                else ""
            )
            out.append(
                f"- **rows/s, {r.total:,} rows**: {v.show(',.0f')}, "
                f"{v.value / ROWS_PER_SECOND:.0%} of {ROWS_PER_SECOND:,}: "
                f"{seconds(r, 'simtrail', cap).show('.3f')} s where the target allows "
                f"{r.total / ROWS_PER_SECOND:.3f} s. The same rows copied bare run at "
                f"{bare.show(',.0f')} rows/s{capture}."
            )
    return out
