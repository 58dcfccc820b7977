"""Retention's prune records, signatures, and bad input to the chain commands."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from simtrail import signing
from tests.catalog import assert_one_line_error
from tests.chainkit import churn, problem, rehash_records, seal, tamper, verify
from tests.conftest import Database, run_cli


def _old_history(db: Database) -> None:
    """Forty-day-old originals below every live id, in the archive and the log
    (put there before the first seal, as an upgraded database would have them)."""
    db.sql(
        "SELECT simtrail.ensure_archive_partitions(now() - interval '40 days',"
        " now() - interval '40 days')"
    )
    tenant = db.sql("SELECT min(tenant_id::text) AS t FROM public.patients")[0]["t"]
    for offset, table in ((-200, "simtrail.archive"), (-100, "simtrail.changes")):
        extra = ", net_id" if table == "simtrail.archive" else ""
        value = ", g" if table == "simtrail.archive" else ""
        db.sql(
            f"INSERT INTO {table} (id, tenant_id, table_name, operation, row_pk, new_data,"
            f" xact_id, changed_at{extra})"
            f" SELECT g, %s, 'public.patients', 'INSERT', jsonb_build_object('id', g),"
            f" jsonb_build_object('room_number', 'old ' || g), '1', now() - interval '40 days'"
            f"{value} FROM generate_series({offset}, {offset + 9}) AS g",
            (tenant,),
        )


def test_retention_prunes_with_a_record_and_the_rest_verifies_from_it(seeded_db: Database) -> None:
    db = seeded_db
    _old_history(db)
    seal(db)
    tenant = db.sql("SELECT tenant_id FROM simtrail.seals WHERE change_id = -200")[0]["tenant_id"]
    before = db.sql("SELECT count(*) AS n FROM simtrail.seals")[0]["n"]
    report = db.sql("SELECT simtrail.apply_retention(30) AS r")[0]["r"]
    assert report["prune"]["seals_dropped"] == 20
    assert report["dropped_partitions"]
    assert db.sql("SELECT count(*) AS n FROM simtrail.seals")[0]["n"] == before - 20
    prune = db.sql("SELECT body FROM simtrail.chain_records WHERE kind = 'prune'")
    assert len(prune) == 1
    (only,) = prune[0]["body"]["ranges"]
    assert (only["tenant_id"], only["first_seq"], only["last_seq"], only["count"]) == (
        tenant, 1, 20, 20)
    code, result = verify(db)
    assert code == 0, result
    # The chain goes on from its anchor.
    churn(db, 1)
    seal(db)
    assert verify(db)[0] == 0

    # An anchor changed with the record chain rehashed over it is caught at
    # the first change it should lead to.
    tamper(db, "UPDATE simtrail.chain_records SET body = jsonb_set(body, '{ranges,0,last_hash}',"
               " to_jsonb(repeat('cd', 32))) WHERE kind = 'prune'")
    assert problem(db)["kind"] == "record_edited"
    rehash_records(db)
    found = problem(db)
    assert (found["kind"], found["tenant_id"], found["seq"]) == ("anchor_mismatch", tenant, 21)


def test_retention_holds_the_seals_of_changes_above_one_it_keeps(seeded_db: Database) -> None:
    """Statements that overlap put a change with a later time at a lower seq:
    retention's time cut then drops seqs above one it keeps. The prune record
    covers the chain's prefix and holds the seals above it."""
    db = seeded_db
    _old_history(db)
    db.sql("UPDATE simtrail.changes SET changed_at = now() WHERE id = -95")
    seal(db)
    straggler = db.sql("SELECT seq FROM simtrail.seals WHERE change_id = -95")[0]["seq"]
    assert straggler == 16
    report = db.sql("SELECT simtrail.apply_retention(30) AS r")[0]["r"]
    assert (report["prune"]["seals_dropped"], report["prune"]["seals_held"]) == (15, 4)
    body = db.sql("SELECT body FROM simtrail.chain_records WHERE kind = 'prune'")[0]["body"]
    assert [(r["first_seq"], r["last_seq"]) for r in body["ranges"]] == [(1, 15)]
    assert [h["seq"] for h in body["held"]] == [17, 18, 19, 20]
    code, result = verify(db)
    assert code == 0, result
    # Run again: nothing new to say, no record.
    again = db.sql("SELECT simtrail.apply_retention(30) AS r")[0]["r"]
    assert again["prune"]["seals_dropped"] == 0
    assert len(db.sql("SELECT id FROM simtrail.chain_records WHERE kind = 'prune'")) == 1
    # A held seal vouches only for its own row: deleting the kept one is caught.
    tamper(db, "DELETE FROM simtrail.changes WHERE id = -95")
    found = problem(db)
    assert (found["kind"], found["change_id"], found["seq"]) == ("deleted", -95, 16)


def test_a_chain_start_dropped_without_a_prune_record_is_named(seeded_db: Database) -> None:
    db = seeded_db
    seal(db)
    first = db.sql("SELECT change_id, tenant_id FROM simtrail.seals WHERE seq = 1 LIMIT 1")[0]
    tamper(db, f"DELETE FROM simtrail.changes WHERE id = {first['change_id']}",
           f"DELETE FROM simtrail.seals WHERE change_id = {first['change_id']}")
    found = problem(db)
    assert (found["kind"], found["seq"], found["tenant_id"]) == ("missing", 1, first["tenant_id"])


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(
    tmp_path: Path,
) -> None:
    out = tmp_path / "chain.key"
    made = run_cli("keygen", "--out", str(out), "--json")
    assert made.exit_code == 0, made.stderr
    info = json.loads(made.stdout)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    public = signing.load_public(Path(info["public_key"]))
    assert info["key_id"] == signing.key_id(public)
    signer = signing.load_signer(out)
    assert signing.verify(public, signer.sign(b"x" * 32), b"x" * 32)
    before = out.read_bytes()
    again = run_cli("keygen", "--out", str(out))
    assert again.exit_code == 2
    assert "refusing to overwrite" in assert_one_line_error(again.stderr)
    assert out.read_bytes() == before


def test_signed_checkpoints_verify_with_their_public_key_only(
    seeded_db: Database, tmp_path: Path
) -> None:
    db = seeded_db
    key, other = tmp_path / "k", tmp_path / "other"
    assert run_cli("keygen", "--out", str(key)).exit_code == 0
    assert run_cli("keygen", "--out", str(other)).exit_code == 0
    result = seal(db, "--sign-key", str(key))
    assert result["signed"] and result["records"]
    rows = db.sql("SELECT key_id FROM simtrail.chain_records")
    assert {r["key_id"] for r in rows} == {signing.load_signer(key).key_id}
    code, report = verify(db, "--public-key", f"{key}.pub")
    assert code == 0, report
    assert report["signatures"] == len(rows)
    wrong = problem(db, "--public-key", f"{other}.pub")
    assert wrong["kind"] == "bad_signature"
    tamper(db, "UPDATE simtrail.chain_records SET signature = overlay(signature placing"
               " '\\xff'::bytea from 1) WHERE id = (SELECT max(id) FROM simtrail.chain_records)")
    forged = problem(db, "--public-key", f"{key}.pub")
    assert forged["kind"] == "bad_signature"


def test_the_daemon_seals_and_signs_each_cycle(seeded_db: Database, tmp_path: Path) -> None:
    key = tmp_path / "k"
    assert run_cli("keygen", "--out", str(key)).exit_code == 0
    done = run_cli("daemon", "--once", "--sign-key", str(key), dsn=seeded_db.dsn)
    assert done.exit_code == 0, done.stderr
    rows = seeded_db.sql("SELECT signature IS NOT NULL AS signed FROM simtrail.chain_records")
    assert rows and all(r["signed"] for r in rows)
    assert verify(seeded_db, "--public-key", f"{key}.pub")[0] == 0


def test_bad_input_to_the_chain_commands_changes_nothing(
    seeded_db: Database, tmp_path: Path
) -> None:
    db = seeded_db
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    cases = [
        (("seal", "--batch", "0"), "--batch must be at least 1"),
        (("seal", "--sign-key", str(tmp_path / "missing")), "cannot read signing key"),
        (("seal", "--sign-key", str(garbage)), "not an unencrypted PEM private key"),
        (("verify",), "give an export directory or --db"),
        (("verify", "--db", str(tmp_path)), "give an export directory or --db"),
        (("verify", "--db", "--public-key", str(garbage)), "not a PEM public key"),
        (("keygen", "--out", str(tmp_path / "no" / "such" / "k")), "is not a directory"),
    ]
    for args, message in cases:
        done = run_cli(*args, dsn=db.dsn)
        assert done.exit_code == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1, (args, done.stderr)
    assert db.sql("SELECT count(*) AS n FROM simtrail.seals")[0]["n"] == 0
    assert db.sql("SELECT count(*) AS n FROM simtrail.chain_records")[0]["n"] == 0
    assert not (tmp_path / "no").exists()
