"""The README's `launch_simulation`: the app's own function calling simtrail.clone_tenant."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import rewindkit
from tests.conftest import Database
from tests.rewindkit import state

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block() -> str:
    text = README.read_text()
    found = re.search(r"<!-- launch_simulation:[^>]*-->\s*```sql\n(.*?)```", text, re.DOTALL)
    assert found, "README lost its launch_simulation block"
    return found.group(1)


def as_user(db: Database, sub: str, query: str, params: tuple[Any, ...]) -> Any:
    with psycopg.connect(db.dsn) as conn:
        claims = json.dumps({"sub": sub, "role": "authenticated"})
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
        conn.execute("SET LOCAL ROLE authenticated")
        row = conn.execute(query, params).fetchone()
        conn.commit()
        return row[0] if row else None


def test_the_readme_launch_simulation_clones_for_instructors_only(seeded_db: Database) -> None:
    db = seeded_db
    db.sql(readme_block())
    template = rewindkit.tenants(db)[0]
    people = {r["role"]: str(r["id"]) for r in db.sql("SELECT id, role FROM public.user_profiles")}
    launch = "SELECT public.launch_simulation(%s, %s)"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_user(db, people["student"], launch, (template, "not allowed"))
    assert (
        db.sql("SELECT count(*) AS n FROM public.tenants WHERE name = 'not allowed'")[0]["n"] == 0
    )

    new_class = str(as_user(db, people["instructor"], launch, (template, "NUR 210 Section Z")))
    copied = sum(n for n, _ in state(db, new_class).values())
    assert copied == sum(n for n, _ in state(db, template).values()) > 0
    marks = db.sql("SELECT name FROM simtrail.list_marks(%s)", (new_class,))
    assert [m["name"] for m in marks] == ["launch"]
    actors = db.sql(
        "SELECT DISTINCT actor ->> 'sub' AS sub FROM simtrail.simulation_tenant_changes"
        " WHERE tenant_id = %s",
        (new_class,),
    )
    assert actors == [{"sub": people["instructor"]}]
