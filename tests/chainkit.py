"""Helpers for the hash-chain tests: write history, seal, tamper, verify."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.conftest import Database, run_cli


def churn(db: Database, rounds: int = 3) -> None:
    """Each patient's room changed `rounds` times, one transaction per round."""
    for n in range(rounds):
        db.sql("UPDATE public.patients SET room_number = %s", (f"R{n}",))


def tick(db: Database) -> None:
    db.sql("SELECT simtrail.tick(interval '1 second')")


def compact(db: Database) -> int:
    archived = 0
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT simtrail.compact_batch('0', 10000)").fetchone()
            assert row is not None
            archived += int(row[0]["archived"])
            if row[0]["done"]:
                return archived


def seal(db: Database, *args: str) -> dict[str, Any]:
    done = run_cli("seal", "--json", *args, dsn=db.dsn)
    assert done.exit_code == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def verify(db: Database, *args: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("verify", "--db", "--json", *args, dsn=db.dsn)
    assert done.exit_code in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.exit_code, report


def problem(db: Database, *args: str) -> dict[str, Any]:
    code, report = verify(db, *args)
    assert code == 1, report
    assert report["ok"] is False
    found: dict[str, Any] = report["problem"]
    return found


def tamper(db: Database, *statements: str) -> None:
    """What a superuser could do behind simtrail's back: triggers off."""
    with psycopg.connect(db.dsn) as conn:
        conn.execute("SET LOCAL session_replication_role = replica")
        for statement in statements:
            conn.execute(statement.encode())


def originals(db: Database) -> int:
    return int(
        db.sql(
            "SELECT (SELECT count(*) FROM simtrail.changes WHERE net_count IS NULL)"
            " + (SELECT count(*) FROM simtrail.archive) AS n"
        )[0]["n"]
    )


def chains(db: Database) -> dict[str | None, list[tuple[int, int]]]:
    """Each tenant's seals as (seq, change id), in seq order."""
    out: dict[str | None, list[tuple[int, int]]] = {}
    for row in db.sql("SELECT tenant_id, seq, change_id FROM simtrail.seals ORDER BY 1, 2"):
        out.setdefault(row["tenant_id"], []).append((row["seq"], row["change_id"]))
    return out


def rehash_records(db: Database) -> None:
    """Recompute the whole record chain after editing a body, as an owner
    who knows the format would: only signatures or a published checkpoint
    can then tell."""
    tamper(
        db,
        """
        DO $$
        DECLARE r record; v_prev bytea := '\\x' || repeat('00', 32);
        BEGIN
            FOR r IN SELECT id, body FROM simtrail.chain_records ORDER BY id LOOP
                UPDATE simtrail.chain_records
                SET prev_hash = v_prev, hash = sha256(v_prev || convert_to(r.body::text, 'UTF8'))
                WHERE id = r.id RETURNING hash INTO v_prev;
            END LOOP;
        END $$
        """,
    )
