"""Invariant I12 in the database: sealing, and `verify --db` catching each
kind of tampering a superuser could do in replica mode."""

from __future__ import annotations

import psycopg
import pytest

from tests.chainkit import (
    chains,
    churn,
    compact,
    originals,
    problem,
    rehash_records,
    seal,
    tamper,
    tick,
    verify,
)
from tests.conftest import Database


def test_seal_gives_each_tenant_a_gapless_chain_and_one_checkpoint(seeded_db: Database) -> None:
    db = seeded_db
    total = originals(db)
    first = seal(db)
    assert first["sealed"] == total > 0
    by_tenant = chains(db)
    assert len([t for t in by_tenant if t is not None]) == 3
    for tenant, links in by_tenant.items():
        assert [seq for seq, _ in links] == list(range(1, len(links) + 1)), tenant
        # One batch seals a tenant's changes in id order.
        assert [cid for _, cid in links] == sorted(cid for _, cid in links), tenant
    heads = db.sql("SELECT tenant_id, seq FROM simtrail.chain_heads")
    assert {h["tenant_id"]: h["seq"] for h in heads} == {t: len(v) for t, v in by_tenant.items()}
    records = db.sql("SELECT kind, body FROM simtrail.chain_records ORDER BY id")
    assert [r["kind"] for r in records] == ["checkpoint"] * len(first["records"])
    assert records[-1]["body"]["heads"] == db.sql("SELECT simtrail.chain_heads_json() AS h")[0]["h"]
    # Nothing new: nothing sealed, no record written.
    again = seal(db)
    assert (again["sealed"], again["records"]) == (0, [])
    assert len(db.sql("SELECT id FROM simtrail.chain_records")) == len(records)
    code, report = verify(db)
    assert code == 0, report
    assert report["seals"] == total


def test_a_transaction_still_running_is_sealed_after_it_ends_not_behind(
    seeded_db: Database,
) -> None:
    db = seeded_db
    seal(db)
    two = db.sql("SELECT tenant_id::text AS t, id FROM public.patients ORDER BY id LIMIT 2")
    tenant = two[0]["t"]
    with psycopg.connect(db.dsn) as early:
        # The early transaction takes its change id first, then stays open
        # while a later one (another patient: no row lock between them) commits.
        early.execute(
            "UPDATE public.patients SET room_number = 'early' WHERE id = %s", (two[0]["id"],)
        )
        db.sql("UPDATE public.patients SET room_number = 'late' WHERE id = %s", (two[1]["id"],))
        during = seal(db)
        assert during["sealed"] == 0
        early.commit()
    after = seal(db)
    assert after["sealed"] > 0
    rows = db.sql(
        "SELECT s.seq, c.new_data ->> 'room_number' AS room FROM simtrail.seals AS s"
        " JOIN simtrail.changes AS c ON c.id = s.change_id"
        " WHERE c.new_data ->> 'room_number' IN ('early', 'late') ORDER BY s.seq",
    )
    rooms = [r["room"] for r in rows]
    assert sorted(rooms) == ["early", "late"]
    if two[1]["t"] == tenant:
        assert rooms == ["early", "late"]  # one chain: the early change first, by id
    assert verify(db)[0] == 0


def test_a_writer_open_in_another_database_does_not_hold_sealing(seeded_db: Database) -> None:
    """The seal's horizon is this database's: a transaction left open elsewhere on
    the server (it has an xid, so the cluster-wide xmin stays at it) cannot write
    this log and must not stall sealing, nor compaction behind it. One open here,
    even before it writes a change, holds it."""
    db = seeded_db
    seal(db)
    patient = db.sql("SELECT id FROM public.patients ORDER BY id LIMIT 1")[0]["id"]
    with db.server.admin() as elsewhere:
        elsewhere.execute("BEGIN")
        held = elsewhere.execute("SELECT pg_current_xact_id()::text").fetchone()
        db.sql("UPDATE public.patients SET room_number = 'while open elsewhere' WHERE id = %s",
               (patient,))
        xmin = db.sql("SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x")[0]["x"]
        assert held is not None and int(xmin) <= int(held[0])
        assert seal(db)["sealed"] == 1
        elsewhere.execute("ROLLBACK")
    with psycopg.connect(db.dsn) as here:
        here.execute("SELECT pg_current_xact_id()")
        db.sql("UPDATE public.patients SET room_number = 'while open here' WHERE id = %s",
               (patient,))
        assert seal(db)["sealed"] == 0
        here.rollback()
    assert seal(db)["sealed"] == 1
    assert verify(db)[0] == 0


def test_compaction_archives_only_sealed_originals_and_the_chain_survives(
    seeded_db: Database,
) -> None:
    db = seeded_db
    churn(db)
    tick(db)
    # compact_batch seals first: a direct caller gets sealed originals too.
    assert compact(db) > 0
    unsealed = db.sql(
        "SELECT count(*) AS n FROM simtrail.archive AS a"
        " WHERE NOT EXISTS (SELECT 1 FROM simtrail.seals AS s WHERE s.change_id = a.id)"
    )
    assert unsealed[0]["n"] == 0
    assert db.sql("SELECT count(*) AS n FROM simtrail.changes WHERE net_count > 1")[0]["n"] > 0
    code, report = verify(db)
    assert code == 0, report
    assert report["seals"] == originals(db)


def test_an_existing_log_and_archive_are_sealed_by_the_first_seal(seeded_db: Database) -> None:
    """An upgrade to v14 finds history already compacted; the first seal
    sweeps the log and the archive alike."""
    db = seeded_db
    churn(db)
    tick(db)
    compact(db)
    tamper(
        db,
        "DELETE FROM simtrail.seals",
        "DELETE FROM simtrail.chain_heads",
        "DELETE FROM simtrail.chain_records",
        "UPDATE simtrail.seal_state SET generation = NULL, sweeping = NULL, xid_lo = '0',"
        " xid_hi = NULL, next_id = NULL",
    )
    archived = db.sql("SELECT count(*) AS n FROM simtrail.archive")[0]["n"]
    assert archived > 0
    result = seal(db, "--batch", "7")
    assert result["sealed"] == originals(db)
    assert result["batches"] > 2
    assert verify(db)[0] == 0


@pytest.fixture
def sealed(seeded_db: Database) -> Database:
    """History in the log and the archive, all sealed, verifying."""
    churn(seeded_db)
    tick(seeded_db)
    compact(seeded_db)
    churn(seeded_db, 1)
    seal(seeded_db)
    assert verify(seeded_db)[0] == 0
    return seeded_db


def _seal_of(db: Database, where: str) -> dict[str, object]:
    rows = db.sql(
        "SELECT s.change_id, s.tenant_id, s.seq FROM simtrail.seals AS s"
        f" WHERE {where} ORDER BY s.tenant_id, s.seq LIMIT 1"
    )
    assert rows, where
    return rows[0]


def test_an_edited_log_row_is_named(sealed: Database) -> None:
    target = _seal_of(sealed, "s.seq > 1 AND s.change_id IN (SELECT id FROM simtrail.changes"
                              " WHERE net_count IS NULL AND new_data IS NOT NULL)")
    tamper(sealed, f"UPDATE simtrail.changes SET new_data = new_data || '{{\"x\": 1}}'"
                   f" WHERE id = {target['change_id']}")
    found = problem(sealed)
    assert (found["kind"], found["change_id"]) == ("edited", target["change_id"])
    assert found["seq"] == target["seq"]
    assert found["tenant_id"] == target["tenant_id"]


def test_an_edited_archive_row_is_named(sealed: Database) -> None:
    target = _seal_of(sealed, "s.change_id IN (SELECT id FROM simtrail.archive)")
    tamper(sealed, "UPDATE simtrail.archive SET actor = '{\"sub\": \"someone else\"}'"
                   f" WHERE id = {target['change_id']}")
    found = problem(sealed)
    assert (found["kind"], found["change_id"]) == ("edited", target["change_id"])


def test_a_deleted_row_is_named(sealed: Database) -> None:
    target = _seal_of(sealed, "s.seq = 3")
    tamper(sealed, f"DELETE FROM simtrail.changes WHERE id = {target['change_id']}",
           f"DELETE FROM simtrail.archive WHERE id = {target['change_id']}")
    found = problem(sealed)
    assert (found["kind"], found["change_id"], found["seq"]) == ("deleted", target["change_id"], 3)


def test_a_row_deleted_with_its_seal_leaves_a_gap(sealed: Database) -> None:
    target = _seal_of(sealed, "s.seq = 3")
    tamper(sealed, f"DELETE FROM simtrail.changes WHERE id = {target['change_id']}",
           f"DELETE FROM simtrail.archive WHERE id = {target['change_id']}",
           f"DELETE FROM simtrail.seals WHERE change_id = {target['change_id']}")
    found = problem(sealed)
    assert (found["kind"], found["seq"], found["tenant_id"]) == ("missing", 3, target["tenant_id"])


def test_a_cut_off_tail_disagrees_with_the_head(sealed: Database) -> None:
    last = sealed.sql(
        "SELECT s.change_id, s.tenant_id, s.seq FROM simtrail.seals AS s"
        " JOIN simtrail.chain_heads AS h ON h.tenant_id = s.tenant_id AND h.seq = s.seq LIMIT 1"
    )[0]
    tamper(sealed, f"DELETE FROM simtrail.changes WHERE id = {last['change_id']}",
           f"DELETE FROM simtrail.seals WHERE change_id = {last['change_id']}")
    found = problem(sealed)
    assert (found["kind"], found["tenant_id"]) == ("head_mismatch", last["tenant_id"])
    # Moving the head back too still disagrees with the last checkpoint.
    tamper(sealed, "UPDATE simtrail.chain_heads AS h SET seq = s.seq, hash = s.hash"
                   " FROM simtrail.seals AS s WHERE s.tenant_id = h.tenant_id"
                   f" AND h.tenant_id = '{last['tenant_id']}' AND s.seq = {last['seq'] - 1}")
    found = problem(sealed)
    assert found["kind"] == "checkpoint_mismatch"
    assert found["tenant_id"] == last["tenant_id"]


def test_a_row_inserted_behind_the_frontier_is_named(sealed: Database) -> None:
    tamper(
        sealed,
        "INSERT INTO simtrail.changes (tenant_id, table_name, operation, row_pk, new_data, xact_id)"
        " SELECT tenant_id, table_name, 'INSERT', row_pk, new_data, xact_id"
        " FROM simtrail.changes WHERE net_count IS NULL AND tenant_id IS NOT NULL"
        " ORDER BY id LIMIT 1",
    )
    inserted = sealed.sql("SELECT max(id) AS id FROM simtrail.changes")[0]["id"]
    found = problem(sealed)
    assert (found["kind"], found["change_id"]) == ("inserted", inserted)


def test_an_edited_seal_or_head_is_named(sealed: Database) -> None:
    target = _seal_of(sealed, "s.seq = 1")
    tamper(sealed, "UPDATE simtrail.seals SET hash = sha256(hash)"
                   f" WHERE change_id = {target['change_id']}")
    assert problem(sealed)["kind"] == "edited"
    tamper(sealed, "UPDATE simtrail.seals SET hash = sha256(hash)"
                   f" WHERE change_id = {target['change_id']}")


def test_an_edited_head_is_named(sealed: Database) -> None:
    tamper(sealed, "UPDATE simtrail.chain_heads SET hash = sha256(hash)"
                   " WHERE tenant_id = (SELECT min(tenant_id) FROM simtrail.chain_heads)")
    assert problem(sealed)["kind"] == "head_mismatch"


def test_an_edited_or_removed_record_breaks_the_record_chain(sealed: Database) -> None:
    first = sealed.sql("SELECT min(id) AS id FROM simtrail.chain_records")[0]["id"]
    tamper(sealed, "UPDATE simtrail.chain_records SET body = body || '{\"note\": 1}'"
                   f" WHERE id = {first}")
    found = problem(sealed)
    assert (found["kind"], found["record_id"]) == ("record_edited", first)
    tamper(sealed, "UPDATE simtrail.chain_records SET body = body - 'note'"
                   f" WHERE id = {first}")
    assert verify(sealed)[0] == 0
    tamper(sealed, f"DELETE FROM simtrail.chain_records WHERE id = {first}")
    found = problem(sealed)
    assert found["kind"] == "record_chain"
    assert found["record_id"] > first


def test_a_checkpoint_rewritten_with_its_chain_still_disagrees_with_the_seals(
    sealed: Database,
) -> None:
    tamper(sealed, "UPDATE simtrail.chain_records SET body = jsonb_set(body, '{heads,0,hash}',"
                   " to_jsonb(repeat('ab', 32))) WHERE id = (SELECT min(id) FROM"
                   " simtrail.chain_records)")
    rehash_records(sealed)
    assert problem(sealed)["kind"] == "checkpoint_mismatch"


def test_app_roles_cannot_read_the_secret_or_write_the_chain(sealed: Database) -> None:
    statements = [
        "SELECT secret FROM simtrail.seal_secret",
        "INSERT INTO simtrail.seals VALUES (-5, 't', 99, '\\x00', now())",
        "UPDATE simtrail.chain_heads SET seq = 1",
        "DELETE FROM simtrail.chain_records",
        "SELECT simtrail.seal_batch(10)",
        "SELECT simtrail.append_record('export', '{\"kind\": \"export\"}')",
        "SELECT simtrail.change_salts(1, 'new', '{\"a\": 1}')",
    ]
    with psycopg.connect(sealed.dsn, autocommit=True) as admin:
        admin.execute("CREATE ROLE chain_owner_role NOSUPERUSER")
        admin.execute("ALTER TABLE public.patients OWNER TO chain_owner_role")
    try:
        for role in ("authenticated", "anon", "chain_owner_role"):
            for statement in statements:
                with psycopg.connect(sealed.dsn) as conn:
                    conn.execute(f'SET LOCAL ROLE "{role}"')
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(statement.encode())
    finally:
        with psycopg.connect(sealed.dsn, autocommit=True) as admin:
            admin.execute("ALTER TABLE public.patients OWNER TO CURRENT_USER")
            admin.execute("DROP ROLE chain_owner_role")
    assert verify(sealed)[0] == 0


def test_change_canon_gives_the_hashes_seal_and_verify_compute(sealed: Database) -> None:
    """seal_batch and verify_chains write the encoding out for speed;
    simtrail.change_canon is the reference export and auditors read."""
    rows = sealed.sql(
        """
        SELECT s.hash = sha256(coalesce(p.hash, simtrail.chain_zero())
                   || convert_to(simtrail.change_canon(k.secret, s.seq, o.id, o.tenant_id,
                          o.table_name, o.operation, o.row_pk, o.old_pk, o.old_data,
                          o.new_data, o.changed_at, o.actor, o.moved), 'UTF8')) AS same
        FROM simtrail.seals AS s
        JOIN simtrail.chain_originals(NULL, true) AS o ON o.id = s.change_id
        LEFT JOIN simtrail.seals AS p
               ON p.tenant_id IS NOT DISTINCT FROM s.tenant_id AND p.seq = s.seq - 1
        CROSS JOIN simtrail.seal_secret AS k
        """
    )
    assert len(rows) == originals(sealed) > 0
    assert all(r["same"] for r in rows)


def test_verify_one_tenant_checks_that_chain_only(sealed: Database) -> None:
    tenants = [r["tenant_id"] for r in sealed.sql(
        "SELECT tenant_id FROM simtrail.chain_heads WHERE tenant_id IS NOT NULL ORDER BY 1")]
    victim, other = tenants[0], tenants[1]
    target = _seal_of(sealed, f"s.tenant_id = '{victim}' AND s.change_id IN"
                              " (SELECT id FROM simtrail.changes WHERE net_count IS NULL)")
    tamper(sealed, "UPDATE simtrail.changes SET row_pk = '{\"id\": 0}'"
                   f" WHERE id = {target['change_id']}")
    code, report = verify(sealed, "--tenant", other)
    assert code == 0, report
    assert report["chains"] == 1
    found = problem(sealed, "--tenant", victim)
    assert (found["kind"], found["tenant_id"]) == ("edited", victim)
