"""Snapshot documents: export holds exactly a tenant's rows, now or at a target;
import refuses a bad document whole, and round-trips into a new tenant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests import rewindkit
from tests.catalog import FIXTURE_TABLES, assert_one_line_error, invoke, table_contents
from tests.conftest import Database, run_cli

Doc = dict[str, Any]
# Metadata that says when the export ran, not what it holds.
WHEN = ("exported_at",)


def export(db: Database, tenant: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = run_cli("snapshot", "export", "--tenant", tenant, *args, dsn=db.dsn, env=env)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def content(text: str) -> Doc:
    """A document less the times of its export (for comparing two exports)."""
    doc: Doc = json.loads(text)
    meta = doc["snapshot_metadata"]
    for key in WHEN:
        meta.pop(key)
    if meta["at"]["kind"] == "now":
        meta["at"].pop("at")
    return doc


def rows_of(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if k != "snapshot_metadata"}


def live_rows(db: Database, tenant: str) -> Doc:
    """The tenant's rows of each captured table, read here without the export's code:
    through the config's own path to the tenant, as to_jsonb prints them in UTC."""
    out: Doc = {}
    with psycopg.connect(db.dsn, row_factory=dict_row, autocommit=True) as conn:
        conn.execute(b"SET TimeZone = 'UTC'")
        conn.execute(b"SET extra_float_digits = 1")
        for table in sorted(FIXTURE_TABLES):
            bare = table.removeprefix("public.")
            path = _tenant_path(bare)
            got = conn.execute(
                f"SELECT pg_catalog.to_jsonb(r.*)::text AS j FROM {table} AS r {path}".encode(),
                (tenant,),
            ).fetchall()
            out[bare] = sorted(row["j"] for row in got)
    return out


def _tenant_path(bare: str) -> str:
    if bare == "lab_results":
        return "JOIN public.lab_panels AS p ON p.id = r.panel_id WHERE p.tenant_id = %s"
    if bare == "wound_assessments":
        return (
            "JOIN public.patient_wounds AS w ON w.id = r.wound_id"
            " JOIN public.patients AS p ON p.id = w.patient_id WHERE p.tenant_id = %s"
        )
    if bare in ("handover_notes", "patient_wounds"):
        return "JOIN public.patients AS p ON p.id = r.patient_id WHERE p.tenant_id = %s"
    return "WHERE r.tenant_id = %s"


def as_pg_text(db: Database, doc: Doc) -> Doc:
    """The document's rows as PostgreSQL prints them back (jsonb text, sorted)."""
    text = db.sql(
        "SELECT pg_catalog.jsonb_object_agg(t.key, (SELECT coalesce(pg_catalog.jsonb_agg("
        " e::text ORDER BY e::text), '[]') FROM pg_catalog.jsonb_array_elements(t.value) AS e))"
        " AS d FROM pg_catalog.jsonb_each(%s::jsonb) AS t WHERE t.key <> 'snapshot_metadata'",
        (json.dumps(doc),),
    )[0]["d"]
    return dict(text)


def test_export_holds_exactly_the_tenants_rows_ordered_by_key(seeded_db: Database) -> None:
    db = seeded_db
    tenant, other = rewindkit.tenants(db)[:2]
    text = export(db, tenant)
    doc = json.loads(text)
    assert set(doc) == {t.removeprefix("public.") for t in FIXTURE_TABLES} | {"snapshot_metadata"}
    assert as_pg_text(db, doc) == live_rows(db, tenant)
    # The same state prints the same document, whatever the session's TimeZone.
    assert content(export(db, tenant, env={"PGTZ": "Asia/Kathmandu"})) == content(text)
    # Ordered by primary key; a composite key by its columns in order.
    for name, rows in rows_of(doc).items():
        pk = doc["snapshot_metadata"]["tables"][name]["primary_key"]
        keys = [tuple(r[c] for c in pk) for r in rows]
        assert keys == sorted(keys), name
        assert doc["snapshot_metadata"]["tables"][name]["rows"] == len(rows)
    assert doc["patients"] and all(r["tenant_id"] == tenant for r in doc["patients"])
    # Generated columns are in the rows, as the user's snapshots hold them.
    assert all(r["full_name"] == f"{r['first_name']} {r['last_name']}" for r in doc["patients"])
    ids = {r["id"] for r in json.loads(export(db, other))["patients"]}
    assert ids.isdisjoint(r["id"] for r in doc["patients"])


def test_metadata_says_what_an_import_elsewhere_needs(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    meta = json.loads(export(db, tenant))["snapshot_metadata"]
    assert meta["tenant"] == tenant
    assert meta["signed"] is False and "not a signed document" in meta["note"]
    assert meta["at"]["kind"] == "now" and meta["at"]["precision"].startswith("exact")
    assert (
        meta["schema_version"]
        == db.sql("SELECT max(version) AS v FROM simtrail.schema_version")[0]["v"]
    )
    assert meta["consistency"] == "one snapshot (repeatable read)"
    assert meta["tables"]["patient_care_team"]["primary_key"] == ["patient_id", "user_id"]
    assert meta["tables"]["patients"]["generated_columns"] == ["full_name"]
    fk = {
        "table": "public.lab_results",
        "columns": ["panel_id"],
        "ref_table": "public.lab_panels",
        "ref_columns": ["id"],
        "kind": "fk",
        "name": "lab_results_panel_id_fkey",
        "as_text": False,
    }
    assert fk in meta["references"]
    assert meta["copy_rules"] == [
        {
            "table": r["table_name"],
            "column": r["column_name"],
            "rule": r["rule"],
            "expression": r["expression"],
        }
        for r in db.sql("SELECT * FROM simtrail.copy_rules ORDER BY table_name, column_name")
    ]


def edit_after_mark(db: Database, tenant: str) -> None:
    """Updates, a cascaded delete, inserts, a new patient: everything an export at
    an earlier target must see through."""
    db.sql("UPDATE public.patients SET diagnosis = 'changed' WHERE tenant_id = %s", (tenant,))
    db.sql(
        "DELETE FROM public.patients WHERE id = (SELECT id FROM public.patients"
        " WHERE tenant_id = %s ORDER BY patient_id LIMIT 1)",
        (tenant,),
    )
    db.sql(
        "INSERT INTO public.patients (tenant_id, patient_id, first_name, last_name, date_of_birth)"
        " VALUES (%s, 'MRN-NEW', 'New', 'Arrival', '1990-01-01')",
        (tenant,),
    )
    db.sql("DELETE FROM public.diabetic_records WHERE tenant_id = %s", (tenant,))


def test_export_at_a_mark_is_the_export_taken_when_the_mark_was(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    boundary, cut = rewindkit.exact_targets(db, tenant)
    rewindkit.mark(db, tenant, "launch")
    then = rows_of(content(export(db, tenant)))
    edit_after_mark(db, tenant)
    now = rows_of(content(export(db, tenant)))
    assert now != then
    for target in ("mark:launch", f"change:{boundary}", cut.isoformat()):
        at = json.loads(export(db, tenant, "--at", target))
        assert rows_of(at) == then, target
        assert at["snapshot_metadata"]["at"]["precision"].startswith("exact"), target
    # Reading the past changed nothing and left no work rows behind.
    assert rows_of(content(export(db, tenant))) == now
    assert db.sql("SELECT count(*) AS n FROM simtrail.rewind_net")[0]["n"] == 0


def test_export_does_not_wait_for_the_class_but_read_committed_locks_it(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    before = rows_of(content(export(db, tenant)))
    # Waiting for a lock fails at once rather than hangs, in every session.
    db.sql(f'ALTER DATABASE "{db.name}" SET lock_timeout = 300')
    writer = db.connect("writer", autocommit=False)
    writer.execute(
        b"UPDATE public.patients SET room_number = 'open' WHERE tenant_id = %s", (tenant,)
    )
    try:
        # REPEATABLE READ (the CLI): no lock, and the open write is not seen.
        assert rows_of(content(export(db, tenant))) == before
        # READ COMMITTED (a plain SQL call): it takes the class's lock.
        with pytest.raises(psycopg.errors.LockNotAvailable):
            db.sql("SELECT simtrail.export_snapshot(%s)", (tenant,))
    finally:
        writer.rollback()
    doc = db.sql("SELECT simtrail.export_snapshot(%s) AS d", (tenant,))[0]["d"]
    assert doc["snapshot_metadata"]["consistency"] == "tenant lock (read committed)"


def test_out_writes_atomically_and_refuses_to_overwrite(
    seeded_db: Database, tmp_path: Path
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    out = tmp_path / "template.json"
    first = run_cli("snapshot", "export", "--tenant", tenant, "--out", str(out), dsn=db.dsn)
    assert first.exit_code == 0, first.stderr
    assert f"to {out}" in first.stdout
    assert content(out.read_text()) == content(export(db, tenant))
    out.write_text("keep me")
    refused = run_cli("snapshot", "export", "--tenant", tenant, "--out", str(out), dsn=db.dsn)
    assert refused.exit_code == 2 and refused.stdout == ""
    assert "exists; pass --force" in assert_one_line_error(refused.stderr)
    assert out.read_text() == "keep me"
    forced = run_cli(
        "snapshot",
        "export",
        "--tenant",
        tenant,
        "--out",
        str(out),
        "--force",
        "--json",
        dsn=db.dsn,
    )
    assert forced.exit_code == 0, forced.stderr
    assert json.loads(forced.stdout)["rows"] == sum(
        len(v) for v in rows_of(json.loads(out.read_text())).values()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["template.json"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--tenant", "00000000-0000-0000-0000-000000000000"), "unknown tenant"),
        (("--tenant", "not-a-key"), "not a valid uuid"),
        (("--at", "mark:nope"), "has no mark 'nope'"),
        (("--at", "yesterday"), "not fixed moments"),
        (("--at", "change:x"), "is not a change id"),
        (("--out", "/nonexistent-dir/x.json"), "cannot write /nonexistent-dir/x.json"),
    ],
)
def test_bad_export_input_is_one_line(
    seeded_db: Database, args: tuple[str, ...], fragment: str
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    full = args if args[0] == "--tenant" else ("--tenant", tenant, *args)
    result = run_cli("snapshot", "export", *full, dsn=db.dsn)
    assert result.exit_code == 2 and result.stdout == ""
    assert fragment in assert_one_line_error(result.stderr)


def empty_tenant(db: Database) -> str:
    return str(
        db.sql("INSERT INTO public.tenants (name) VALUES ('imported') RETURNING id")[0]["id"]
    )


def written(db: Database) -> tuple[dict[str, tuple[int, str]], list[dict[str, Any]]]:
    """The app's tables and simtrail's log and copies: what a refusal must not change."""
    log = db.sql(
        "SELECT (SELECT count(*) FROM simtrail.changes) AS changes,"
        " (SELECT count(*) FROM simtrail.copies) AS copies,"
        " (SELECT count(*) FROM simtrail.copy_rows) AS staged,"
        " (SELECT count(*) FROM simtrail.marks) AS marks"
    )
    return table_contents(db.dsn), log


def _doc(db: Database, tenant: str) -> Doc:
    doc: Doc = json.loads(export(db, tenant))
    return doc


BAD_DOCS: dict[str, tuple[Any, str]] = {
    "array": ([], "a snapshot document is a JSON object of tables"),
    "string": ("patients", "a snapshot document is a JSON object of tables"),
    "unknown-table": ({"patients": [], "simulation_templates": []}, "not captured here"),
    "unknown-schema": ({"audit.patients": []}, "not captured here: audit.patients"),
    "not-an-array": ({"patients": {"id": 1}}, "patients: expected an array of rows, not object"),
    "row-not-object": ({"lab_panels": [[1]]}, "lab_panels[0]: expected an object"),
    "unknown-column": (None, "table public.patients has no column shoe_size"),
    "missing-pk": (None, "no value for primary key column id"),
    "missing-composite-pk-part": (None, "no value for primary key column user_id"),
    "bad-value": (None, "invalid input value for enum public.acuity_level"),
    "duplicate-key": (None, "is given 2 times"),
    "metadata-not-object": ({"snapshot_metadata": []}, "snapshot_metadata must be an object"),
    # Results without their panels would land in the source's class.
    "reference-outside": (None, "of public.lab_results point through lab_results_panel_id_fkey"),
}


def bad_doc(db: Database, tenant: str, case: str) -> Any:
    given, _ = BAD_DOCS[case]
    if given is not None:
        return given
    doc = _doc(db, tenant)
    if case == "unknown-column":
        doc["patients"][-1]["shoe_size"] = 44
    elif case == "missing-pk":
        del doc["patients"][1]["id"]
    elif case == "missing-composite-pk-part":
        del doc["patient_care_team"][0]["user_id"]
    elif case == "bad-value":
        doc["patients"][0]["acuity"] = "fine"
    elif case == "duplicate-key":
        doc["lab_panels"].append(doc["lab_panels"][0])
    elif case == "reference-outside":
        return {"lab_results": doc["lab_results"]}
    return doc


@pytest.mark.parametrize("case", sorted(BAD_DOCS))
def test_a_refused_document_writes_nothing(seeded_db: Database, tmp_path: Path, case: str) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    target = empty_tenant(db)
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(bad_doc(db, tenant, case)))
    before = written(db)
    result = run_cli("snapshot", "import", str(path), "--to-tenant", target, dsn=db.dsn)
    assert result.exit_code == 2 and result.stdout == ""
    assert BAD_DOCS[case][1] in assert_one_line_error(result.stderr)
    assert written(db) == before


def test_errors_name_the_row(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    doc = _doc(db, tenant)
    doc["patients"][1]["date_of_birth"] = "yesterday-ish"
    with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
        db.sql("SELECT simtrail.stage_snapshot(%s::jsonb, false)", (json.dumps(doc),))
    assert str(raised.value.diag.message_primary).startswith("patients[1]: invalid input syntax")
    unknown: Doc = {"patients": [], "templates": [], "audit_log": []}
    with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
        db.sql("SELECT simtrail.import_snapshot(%s::jsonb, %s)", (json.dumps(unknown), tenant))
    assert "2 table(s) not captured here: audit_log, templates" in str(raised.value)


@pytest.mark.parametrize(
    ("content_bytes", "fragment"),
    [
        (b'{"patients": [', "is not JSON: Expecting value at line 1 column 15"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b"", "is not JSON"),
    ],
)
def test_unreadable_files_are_one_line(
    seeded_db: Database, tmp_path: Path, content_bytes: bytes, fragment: str
) -> None:
    db = seeded_db
    path = tmp_path / "doc.json"
    path.write_bytes(content_bytes)
    target = empty_tenant(db)
    before = written(db)
    result = run_cli("snapshot", "import", str(path), "--to-tenant", target, dsn=db.dsn)
    assert result.exit_code == 2 and result.stdout == ""
    assert fragment in assert_one_line_error(result.stderr)
    assert written(db) == before


def test_a_missing_file_is_a_usage_error(seeded_db: Database, tmp_path: Path) -> None:
    result = invoke(
        seeded_db.dsn, "snapshot", "import", str(tmp_path / "nope.json"), "--to-tenant", "x"
    )
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_staged_rows_drop_generated_columns_and_default_missing_ones(seeded_db: Database) -> None:
    db = seeded_db
    doc = {
        "patients": [
            {
                "id": "0A5D1C2E-0000-4000-8000-000000000001",
                "full_name": "ignored",
                "first_name": "Ada",
                "last_name": "Old",
                "patient_id": "MRN-OLD",
                "date_of_birth": "1950-02-03",
            }
        ],
        "public.lab_results": [],
    }
    conn = db.connect("stage", autocommit=False)
    with conn.transaction(force_rollback=True):
        summary = conn.execute(
            b"SELECT simtrail.stage_snapshot(%s::jsonb, false) AS s", (json.dumps(doc),)
        ).fetchone()
        staged = conn.execute(b"SELECT table_name, key, img FROM simtrail.copy_rows").fetchall()
    assert summary is not None
    assert summary["s"] == {
        "tables": {"public.patients": 1, "public.lab_results": 0},
        "skipped": [],
    }
    assert len(staged) == 1
    row = staged[0]
    # The key as to_jsonb spells it, so references to it match.
    assert row["key"] == {"id": "0a5d1c2e-0000-4000-8000-000000000001"}
    img = row["img"]
    assert "full_name" not in img
    assert img["acuity"] == "stable" and img["allergies"] == [] and img["admission_details"] == {}
    assert img["tenant_id"] is None and img["created_at"] is not None


def import_cli(db: Database, path: Path, target: str, *args: str) -> dict[str, Any]:
    result = run_cli(
        "snapshot", "import", str(path), "--to-tenant", target, "--json", *args, dsn=db.dsn
    )
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _key(row: dict[str, Any], columns: list[str]) -> str:
    return json.dumps({c: row[c] for c in columns}, sort_keys=True)


def assert_bijection(db: Database, copy_id: int, source: Doc, copied: Doc, target: str) -> None:
    """Every row of `source` maps, through the copy's key map, onto exactly one row of
    `copied`, equal to it but for its key, its tenant, the references into the copy
    (remapped) and the ruled columns (as ruled); and no row of `copied` is left over."""
    meta = source["snapshot_metadata"]["tables"]
    name_of = {m["table"]: bare for bare, m in meta.items()}
    pk = {bare: m["primary_key"] for bare, m in meta.items()}
    keymap: dict[str, dict[str, str]] = {bare: {} for bare in meta}
    for k in db.sql(
        "SELECT table_name, old_key, new_key FROM simtrail.copy_keys WHERE copy_id = %s",
        (copy_id,),
    ):
        bare = name_of[k["table_name"]]
        keymap[bare][json.dumps(k["old_key"], sort_keys=True)] = json.dumps(
            k["new_key"], sort_keys=True
        )
    new_rows = {b: {_key(r, pk[b]): r for r in rows} for b, rows in rows_of(copied).items()}
    for bare, rows in rows_of(source).items():
        assert sorted(keymap[bare]) == sorted(_key(r, pk[bare]) for r in rows), bare
        assert sorted(keymap[bare].values()) == sorted(new_rows[bare]), bare
    tenant_column = {
        name_of[r["table_name"]]: r["col"]
        for r in db.sql(
            "SELECT table_name, tenant_path ->> 'tenant_column' AS col FROM"
            " simtrail.captured_tables WHERE jsonb_array_length(tenant_path -> 'hops') = 0"
        )
    }
    refs = db.sql("SELECT * FROM simtrail.references()")
    rules = {
        (name_of[r["table_name"]], r["column_name"]): r
        for r in db.sql("SELECT * FROM simtrail.copy_rules")
    }
    for bare, rows in rows_of(source).items():
        for row in rows:
            new = new_rows[bare][keymap[bare][_key(row, pk[bare])]]
            expected = {**row, **json.loads(keymap[bare][_key(row, pk[bare])])}
            if bare in tenant_column:
                expected[tenant_column[bare]] = target
            for ref in (r for r in refs if name_of[r["table_name"]] == bare):
                parent = name_of[ref["ref_table"]]
                value = [str(row[c]) for c in ref["columns"]]
                hit = [
                    p for p in source[parent] if [str(p[c]) for c in ref["ref_columns"]] == value
                ]
                if hit:
                    moved = new_rows[parent][keymap[parent][_key(hit[0], pk[parent])]]
                    for c, rc in zip(ref["columns"], ref["ref_columns"], strict=True):
                        expected[c] = str(moved[rc]) if ref["as_text"] else moved[rc]
            made = {c for (t, c), rule in rules.items() if t == bare and rule["rule"] != "null"}
            for (table, column), rule in rules.items():
                if table == bare and rule["rule"] == "null":
                    expected[column] = None
            # Values a rule makes are checked by the caller.
            assert {k: v for k, v in new.items() if k not in made} == {
                k: v for k, v in expected.items() if k not in made
            }, (bare, row)


def test_round_trip_into_a_new_tenant_is_a_bijection(seeded_db: Database, tmp_path: Path) -> None:
    db = seeded_db
    source, other = rewindkit.tenants(db)[:2]
    path = tmp_path / "template.json"
    assert run_cli("snapshot", "export", "--tenant", source, "--out", str(path), dsn=db.dsn)
    exported = json.loads(path.read_text())
    # A rule removed after the export: no longer applied, and reported as only
    # in the document.
    db.sql(
        "DELETE FROM simtrail.copy_rules WHERE table_name = 'public.patient_medications'"
        " AND column_name = 'last_administered'"
    )
    states = {t: rewindkit.state(db, t) for t in (source, other)}
    target = empty_tenant(db)
    report = import_cli(db, path, target)
    assert report["kind"] == "import" and report["to"] == target and report["mark"] == "launch"
    assert report["totals"]["rows"] == sum(len(v) for v in rows_of(exported).values())
    assert report["differences"]["copy_rules_only_in_document"] == [
        {
            "table": "public.patient_medications",
            "column": "last_administered",
            "rule": "null",
            "expression": None,
        }
    ]
    assert report["differences"]["copy_rules_only_here"] == []
    assert report["differences"]["references_only_in_document"] == []
    assert report["differences"]["references_only_here"] == []
    assert report["skipped_tables"] == []
    copied = json.loads(export(db, target))
    assert_bijection(db, report["copy_id"], exported, copied, target)
    assert copied["lab_panels"] and {r["status"] for r in copied["lab_panels"]} == {"new"}
    assert {r["label_printed"] for r in copied["patient_medications"]} == {False}
    bands = [r["wristband"] for r in copied["patients"]]
    assert len(set(bands)) == len(bands) and all(b.startswith("P") for b in bands)
    assert set(bands).isdisjoint(r["wristband"] for r in exported["patients"])
    # The source and the other classes are untouched; the import is in the log,
    # and a reset of the new class brings back the import.
    assert {t: rewindkit.state(db, t) for t in (source, other)} == states
    db.sql("DELETE FROM public.patients WHERE tenant_id = %s", (target,))
    rewindkit.rewind(db, target, "mark:launch")
    assert rows_of(json.loads(export(db, target))) == rows_of(copied)


def test_dry_run_and_a_non_empty_target_write_nothing(seeded_db: Database, tmp_path: Path) -> None:
    db = seeded_db
    source = rewindkit.tenants(db)[0]
    path = tmp_path / "template.json"
    path.write_text(export(db, source))
    target = empty_tenant(db)
    before = written(db)
    dry = import_cli(db, path, target, "--dry-run")
    assert dry["dry_run"] is True and dry["copy_id"] is None and dry["totals"]["rows"] > 0
    assert written(db) == before
    result = run_cli("snapshot", "import", str(path), "--to-tenant", source, dsn=db.dsn)
    assert result.exit_code == 3 and result.stdout == ""
    assert "already has rows" in assert_one_line_error(result.stderr)
    assert written(db) == before


def test_a_users_snapshot_data_with_other_tables_loads_with_skip_unknown(
    seeded_db: Database, tmp_path: Path
) -> None:
    db = seeded_db
    source = rewindkit.tenants(db)[0]
    doc = rows_of(json.loads(export(db, source)))
    # As the user's own snapshots are: no simtrail metadata, tables simtrail does not capture.
    doc["simulation_templates"] = [{"id": 1, "name": "Med-surg day 1"}]
    doc["user_profiles"] = []
    path = tmp_path / "snapshot_data.json"
    path.write_text(json.dumps(doc))
    target = empty_tenant(db)
    before = written(db)
    refused = run_cli("snapshot", "import", str(path), "--to-tenant", target, dsn=db.dsn)
    assert refused.exit_code == 2
    assert "2 table(s) not captured here: simulation_templates, user_profiles" in (
        assert_one_line_error(refused.stderr)
    )
    assert written(db) == before
    text = run_cli(
        "snapshot", "import", str(path), "--to-tenant", target, "--skip-unknown", dsn=db.dsn
    )
    assert text.exit_code == 0, text.stderr
    assert "skipped simulation_templates: not captured here" in text.stderr
    assert f"from {path} to tenant {target}" in text.stdout
    copied = rows_of(json.loads(export(db, target)))
    assert {k: len(v) for k, v in copied.items()} == {
        k: len(v) for k, v in doc.items() if k not in ("simulation_templates", "user_profiles")
    }
    source_row = db.sql("SELECT source, target_tenant FROM simtrail.copies WHERE kind = 'import'")[
        0
    ]
    assert source_row["target_tenant"] == target
    assert source_row["source"]["skipped"] == ["simulation_templates", "user_profiles"]
    assert source_row["source"]["document"] == {}


@pytest.mark.parametrize("role", ["authenticated", "anon"])
def test_app_roles_can_neither_export_nor_import(seeded_db: Database, role: str) -> None:
    db = seeded_db
    source = rewindkit.tenants(db)[0]
    target = empty_tenant(db)
    doc = json.dumps(rows_of(_doc(db, source)))
    before = written(db)
    claims = json.dumps({"sub": "s1", "role": role, "tenant_id": source})
    for query, params in (
        ("SELECT simtrail.export_snapshot(%s)", (source,)),
        ("SELECT simtrail.export_snapshot(%s, 'mark:x')", (source,)),
        ("SELECT simtrail.import_snapshot(%s::jsonb, %s)", (doc, target)),
        ("SELECT simtrail.stage_snapshot(%s::jsonb, true)", (doc,)),
        ("SELECT * FROM simtrail.copy_rows", ()),
    ):
        with psycopg.connect(db.dsn) as conn:
            conn.execute(f"SET ROLE {role}")
            conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(query.encode(), params)
    assert written(db) == before
