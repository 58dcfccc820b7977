"""Redaction and incremental exports: a redacted value leaves no trace in the
files and still verifies; a disclosed value checks against its commitment;
--after continues from the previous heads with no gap and no overlap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from simtrail import canonical
from tests import exportkit as ek
from tests.conftest import Database, run_cli


def test_a_redacted_column_leaves_no_trace_and_still_verifies(
    seeded_db: Database, tmp_path: Path
) -> None:
    db = seeded_db
    patient = db.sql("SELECT id::text AS id FROM public.patients LIMIT 1")[0]
    for name in ("Quixotewright", "Zephyrinebottom"):
        db.sql("UPDATE public.patients SET last_name = %s WHERE id = %s", (name, patient["id"]))
    ek.seal(db)
    out = tmp_path / "r"
    ek.exported(db, out, "--redact", "patients.last_name", "--redact", "patients.full_name")
    ek.verified(out)
    for name in ("Quixotewright", "Zephyrinebottom"):
        for path in out.iterdir():
            assert name not in path.read_text("utf-8"), (name, path.name)
    # The fact of the change is kept: the update is there, its commitments too.
    line = next(x for x in ek.full_lines(out) if x["table_name"] == "public.patients"
                and x["operation"] == "UPDATE" and x["row_pk"] == {"id": patient["id"]}
                and "last_name" in x["redacted"]["new"])
    assert "last_name" not in line["new_data"] and "last_name" not in line["salts"]["new"]
    commitment = line["redacted"]["new"]["last_name"]
    assert len(commitment) == 64

    # The owner discloses the value and its salt; anyone checks it offline.
    salt = db.sql("SELECT simtrail.change_salts(%s, 'new', new_data) ->> 'last_name' AS s"
                  " FROM simtrail.changes WHERE id = %s", (line["id"], line["id"]))[0]["s"]
    args = ["verify-disclosure", str(out), "--change", str(line["id"]), "--side", "new",
            "--column", "last_name", "--salt", salt]
    good = run_cli(*args, "--value", '"Quixotewright"')
    assert good.exit_code == 0 and "matches" in good.stdout, good.stderr
    assert good.exit_code == 0 and "matches" in good.stdout
    bad = run_cli(*args, "--value", '"Smith"')
    assert bad.exit_code == 1 and "does not match" in bad.stderr


def _key(line: dict[str, Any]) -> tuple[str, int]:
    return line["tenant_id"] or "", line["seq"]


def test_incremental_exports_have_no_gap_and_no_overlap(
    seeded_db: Database, tmp_path: Path
) -> None:
    db = seeded_db
    ek.seal(db)
    ek.exported(db, tmp_path / "1")
    db.sql("UPDATE public.patients SET room_number = 'C-' || patient_id")
    ek.seal(db)
    ek.exported(db, tmp_path / "2", "--after", str(tmp_path / "1"))
    ek.exported(db, tmp_path / "3", "--after", str(tmp_path / "2"))
    ek.exported(db, tmp_path / "all")
    assert ek.verified(tmp_path / "2", "--after", str(tmp_path / "1"))["after"]
    assert ek.verified(tmp_path / "3", "--after", str(tmp_path / "2"))["lines"] == 0
    parts = [canonical.loads(x) for n in "123" for x in ek.lines(tmp_path / n)]
    whole = [canonical.loads(x) for x in ek.lines(tmp_path / "all")]
    assert sorted(parts, key=_key) == sorted(whole, key=_key)
    assert len({_key(x) for x in parts}) == len(parts)

    # Verified against the wrong previous export: the link is named broken.
    found = ek.problem(tmp_path / "3", "--after", str(tmp_path / "1"))
    assert "does not continue" in found["message"]
    # A gap: export 3's manifest claims to start later than export 2 ended.
    data = ek.manifest(tmp_path / "2")
    data["chains"][0]["head"] = "0" * 64
    ek.write_manifest(tmp_path / "2", data)
    assert "previous export" in ek.problem(tmp_path / "3", "--after", str(tmp_path / "2"))[
        "message"]


def test_a_transaction_in_flight_is_never_skipped(seeded_db: Database, tmp_path: Path) -> None:
    """The cursor is the seal's xmin, not ids: a change committed late (with a
    smaller id than changes already committed) lands in the next export."""
    db = seeded_db
    ek.seal(db)
    ek.exported(db, tmp_path / "1")
    # Two patients of one class: its chain orders them by id.
    patients = [r["id"] for r in db.sql(
        "SELECT id::text AS id FROM public.patients WHERE tenant_id = (SELECT min(tenant_id::text)"
        "::uuid FROM public.patients) ORDER BY id LIMIT 2")]
    with psycopg.connect(db.dsn) as late:
        late.execute("UPDATE public.patients SET room_number = 'late' WHERE id = %s",
                     (patients[0],))
        db.sql("UPDATE public.patients SET room_number = 'early' WHERE id = %s", (patients[1],))
        # 'early' has committed but cannot be sealed while 'late' runs.
        ek.seal(db, wait=0)
        ek.exported(db, tmp_path / "2", "--after", str(tmp_path / "1"))
        late.commit()
    ek.seal(db)
    ek.exported(db, tmp_path / "3", "--after", str(tmp_path / "2"))
    ek.verified(tmp_path / "2", "--after", str(tmp_path / "1"))
    ek.verified(tmp_path / "3", "--after", str(tmp_path / "2"))
    rooms = {n: [x["new_data"].get("room_number") for x in ek.full_lines(tmp_path / n)
                 if x["table_name"] == "public.patients"] for n in "23"}
    # Nothing of either while the early one's elder was still running...
    assert rooms["2"] == []
    # ...then both, the late one first (it has the smaller id).
    assert rooms["3"] == ["late", "early"]


def test_held_seals_after_retention_export_and_verify(
    seeded_db: Database, tmp_path: Path
) -> None:
    """Retention drops a seq above one it keeps: its seal is held, and the
    export carries it as a held stub that the prune record in records.jsonl
    vouches for; an incremental export across the prune verifies too."""
    from tests.test_chain_records import _old_history

    db = seeded_db
    _old_history(db)
    db.sql("UPDATE simtrail.changes SET changed_at = now() WHERE id = -95")
    ek.seal(db)
    ek.exported(db, tmp_path / "1")
    report = db.sql("SELECT simtrail.apply_retention(30) AS r")[0]["r"]
    assert report["prune"]["seals_held"] == 4
    db.sql("UPDATE public.patients SET room_number = 'after'")
    ek.seal(db)
    ek.exported(db, tmp_path / "2", "--after", str(tmp_path / "1"))
    ek.verified(tmp_path / "2", "--after", str(tmp_path / "1"))
    ek.exported(db, tmp_path / "all")
    ek.verified(tmp_path / "all")
    held = [o for o in map(canonical.loads, ek.lines(tmp_path / "all")) if "held" in o]
    assert [h["seq"] for h in held] == [17, 18, 19, 20]
    # A held line the prune record does not hold is refused.
    lines = ek.lines(tmp_path / "all")
    i = next(i for i, x in enumerate(lines) if "held" in canonical.loads(x))
    forged = canonical.loads(lines[i])
    forged["held"] = 12345
    lines[i] = canonical.jsonb_text(forged) + "\n"
    ek.write_lines(tmp_path / "all", lines)
    assert "no prune record" in ek.problem(tmp_path / "all")["message"]
