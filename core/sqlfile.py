"""Named SQL blocks kept in .sql files, parsed once.

A block starts with a line `-- name: NAME` and runs to the next such line, so
Python refers to queries by name and never assembles SQL text itself.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from psycopg import sql

_NAME = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def read(package: str, filename: str) -> str:
    return resources.files(package).joinpath(filename).read_text(encoding="utf-8")


@cache
def queries(package: str, filename: str) -> dict[str, str]:
    text = read(package, filename)
    found: dict[str, str] = {}
    marks = list(_NAME.finditer(text))
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following else len(text)
        name = mark.group(1)
        if name in found:
            raise ValueError(f"{filename}: query {name!r} defined twice")
        found[name] = text[mark.end() : end].strip()
    return found


def query(package: str, filename: str, name: str) -> sql.SQL:
    # The text comes from our own packaged file, never from input.
    return sql.SQL(queries(package, filename)[name])
