"""One export or one verify in a process of its own, so its peak RSS is its own.

`python -m bench.export_child export DSN DIR` or `... verify DIR`, with
`--profile` to run it under cProfile (verify in one process, so the
profile sees the work its workers do) and report the functions that took
the most time of their own. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from simtrail.db import connect
from simtrail.export import parallel, verify, writer

TOP = 10


def _export(dsn: str, out: Path) -> int:
    report = writer.export(
        lambda purpose, autocommit: connect(dsn, f"bench {purpose}", autocommit=autocommit),
        out,
        writer.Filters(),
    )
    return int(report["changes"])


def _verify(directory: Path, one_process: bool) -> int:
    if one_process:
        # What each worker does, in this process, where cProfile sees it.
        parallel.PARALLEL_BYTES = 1 << 62
    return verify.verify(directory).lines


def _top(profile: cProfile.Profile) -> list[dict[str, Any]]:
    """The functions with the most time of their own, each as a share of all of it."""
    stats = pstats.Stats(profile)
    rows = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in rows.values()) or 1.0
    ranked = sorted(rows.items(), key=lambda item: item[1][2], reverse=True)[:TOP]
    return [
        {
            "function": f"{Path(file).name}:{line}({name})" if line else name,
            "calls": entry[1],
            "own_share": entry[2] / total,
            "cumulative_share": entry[3] / total,
        }
        for (file, line, name), entry in ranked
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export_child")
    parser.add_argument("mode", choices=("export", "verify"))
    parser.add_argument("args", nargs="+")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "export":
        dsn, out = args.args
        job: Callable[[], int] = partial(_export, dsn, Path(out))
    else:
        (directory,) = args.args
        job = partial(_verify, Path(directory), args.profile)
    profile = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    lines = job()
    if profile is not None:
        profile.disable()
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "seconds": seconds,
        "lines": lines,
        "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        # verify's worker processes, if it started any: the largest one's peak.
        "worker_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    if profile is not None:
        result["top"] = _top(profile)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
