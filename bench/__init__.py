"""Benchmarks for simtrail, run with ``python -m bench`` (or ``make bench``).

Each part measures one thing side by side in a single run and writes its own
section of ``BENCHMARKS.md``; see :mod:`bench.report` for how sections are kept
apart. Speed is measured here, never in the test suite.
"""
