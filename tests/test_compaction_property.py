"""I7 under random histories: compaction changes no rewind to a mark or to a
tick it keeps, and every original change survives exactly once, either in
the log or in the archive, unchanged."""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import psycopg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests import histories, rewindkit
from tests.conftest import Database
from tests.fresh import copy_of, settle

EXAMPLES = int(os.environ.get("SIMTRAIL_COMPACTION_EXAMPLES", "25"))

History = list[tuple[list[histories.Op], bool]]
# (random history, rework of a few patients, the patient whose tenant the
# mark is for, where the mark goes: after that many of the rework's
# transactions, after the segment's tick, or nowhere)
Segment = tuple[History, History, int, int | str | None]
Outcome = dict[str, rewindkit.State] | str
Target = tuple[str, str]

# Moves between classes make rewinds refuse; with them in every segment most
# outcomes would be refusals, so only some segments carry them (moves to and
# from no class are in all). Deleting a user makes nearly every later restore
# refuse and teaches nothing here.
without_moves = histories.make_histories(frozenset({"move_patient", "delete_user"}))
with_moves = histories.make_histories(frozenset({"delete_user"}))
# Rows written more than once between two cut points are what compaction
# folds. Random histories spread their writes over every patient, so each
# segment also reworks the rows of the first three patients.
rework = st.lists(
    st.tuples(
        st.lists(
            st.tuples(
                st.sampled_from(["update_patient", "edit_children", "add_wound", "add_panel"]),
                st.integers(0, 2),
                st.integers(0, 40),
            ),
            min_size=1,
            max_size=3,
        ),
        st.sampled_from([True, True, True, False]),
    ),
    min_size=2,
    max_size=6,
)
segments = st.lists(
    st.tuples(
        st.one_of(without_moves, with_moves),
        rework,
        st.integers(0, 2),
        # A mark amid the rework is a cut point no tick gives, between
        # writes of the same rows.
        st.one_of(st.integers(1, 6), st.just("after tick"), st.none()),
    ),
    min_size=1,
    max_size=4,
)
# Mostly every tick kept; sometimes thinned so that compaction folds across
# the ticks that went (marks still cut).
keep_every = st.sampled_from(
    ["1 microsecond", "1 microsecond", "3 milliseconds", "20 milliseconds", "1 hour"]
)
# A rewind refuses with one of these (bad target, cross-tenant move or drift,
# a restored row missing its parent); anything else is a failure in itself.
REFUSALS = {"22023", "55000", "23503"}

LOG_COLUMNS = (
    "id, tenant_id, table_name, operation, row_pk, old_pk, old_data, new_data,"
    " xact_id::text AS xact_id, changed_at, moved"
)
ORIGINAL_FIELDS = (
    "tenant_id",
    "table_name",
    "operation",
    "row_pk",
    "old_pk",
    "old_data",
    "new_data",
    "xact_id",
    "changed_at",
    "moved",
)


def compact_all(db: Database, batch: int) -> list[dict[str, Any]]:
    """Batches in their own transactions, as the daemon runs them, until done."""
    reports = []
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for _ in range(100_000):
            row = conn.execute("SELECT simtrail.compact_batch('0', %s)", (batch,)).fetchone()
            assert row is not None
            report: dict[str, Any] = row[0]
            reports.append(report)
            if report["done"]:
                return reports
    raise AssertionError("compaction never reported done")


def outcomes(db: Database, targets: list[Target], tenants: list[str]) -> dict[Target, Outcome]:
    """What each rewind would leave, for every tenant, or the SQLSTATE it refused
    with. Each rewind is rolled back, so they all start from the same state."""
    result: dict[Target, Outcome] = {}
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for tenant, target in targets:
            try:
                with conn.transaction(force_rollback=True):
                    conn.execute("SELECT simtrail.rewind(%s, %s, false)", (tenant, target))
                    rows = conn.execute(
                        "SELECT t.tenant, s.table_name, s.row_count, s.checksum"
                        " FROM unnest(%s::text[]) AS t (tenant)"
                        " CROSS JOIN LATERAL simtrail.tenant_state(t.tenant) AS s",
                        (tenants,),
                    ).fetchall()
            except psycopg.Error as exc:
                if exc.sqlstate not in REFUSALS:
                    raise
                result[(tenant, target)] = exc.sqlstate
                continue
            states: dict[str, rewindkit.State] = {t: {} for t in tenants}
            for who, table, count, checksum in rows:
                states[who][table] = (int(count), checksum)
            result[(tenant, target)] = states
    return result


def check_exactly_once(
    before_log: list[dict[str, Any]],
    before_archive: list[dict[str, Any]],
    after_log: list[dict[str, Any]],
    after_archive: list[dict[str, Any]],
    actors: dict[str, Any],
) -> int:
    """Every original is either still in the log or in the archive, never both,
    never twice, never altered. Returns how many net changes compaction made."""
    originals = {r["id"]: r for r in before_log if r["net_from"] is None}
    archived_before = {r["id"] for r in before_archive}
    kept = [r["id"] for r in after_log if r["net_from"] is None]
    archived = [r["id"] for r in after_archive]
    assert Counter(kept + archived) == Counter([*originals, *archived_before])

    for row in after_archive:
        if row["id"] in archived_before:
            continue
        original = originals[row["id"]]
        for column in ORIGINAL_FIELDS:
            assert row[column] == original[column], (row["id"], column)
        assert row["actor"] == actors[row["xact_id"]], row["id"]
    # Originals still in the log are untouched.
    for row in after_log:
        if row["net_from"] is None:
            assert row == originals[row["id"]]

    # Net changes made earlier stay as they were; each new one stands for
    # exactly the originals archived under its id, all of one row.
    nets_before = {r["id"]: r for r in before_log if r["net_from"] is not None}
    members: dict[int, list[dict[str, Any]]] = {}
    for row in after_archive:
        if row["id"] not in archived_before:
            members.setdefault(row["net_id"], []).append(row)
    made = 0
    for net in after_log:
        if net["net_from"] is None:
            continue
        if net["id"] in nets_before:
            assert net == nets_before[net["id"]]
            continue
        made += 1
        group = sorted(members.pop(net["id"]), key=lambda r: r["id"])
        assert len(group) >= 2
        assert (net["net_from"], net["id"], net["net_count"]) == (
            group[0]["id"],
            group[-1]["id"],
            len(group),
        )
        for row in group:
            assert (row["tenant_id"], row["table_name"], row["row_pk"]) == (
                net["tenant_id"],
                net["table_name"],
                net["row_pk"],
            )
        assert net["xact_id"] == group[-1]["xact_id"]
    assert members == {}, "archived originals without a net change in the log"
    return made


def read_log(db: Database) -> list[dict[str, Any]]:
    return db.sql(f"SELECT {LOG_COLUMNS}, net_from, net_count FROM simtrail.changes ORDER BY id")


def read_archive(db: Database) -> list[dict[str, Any]]:
    return db.sql(f"SELECT {LOG_COLUMNS}, actor, net_id FROM simtrail.archive ORDER BY id")


def test_compaction_changes_no_rewind_and_archives_each_change_once(
    seeded_db: Database,
) -> None:
    base = seeded_db
    # The seeding is compacted once here, so each example compacts only its
    # own history; the tick also gives every example a target before it all.
    base.sql("SELECT simtrail.tick()")
    compact_all(base, 10_000)
    time.sleep(0.002)
    folded_examples = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(plan=segments, keep=keep_every, batch=st.integers(1, 50))
    # Fixed cases the random ones may miss. A row updated twice between two
    # ticks: this must fold.
    @example(
        plan=[([], [([("update_patient", 0, 1), ("update_patient", 0, 2)], True)], 0, None)],
        keep="1 microsecond",
        batch=50,
    )
    # A mark of its tenant between two updates of a row: no fold across it.
    @example(
        plan=[([], [([("update_patient", 0, 1)], True), ([("update_patient", 0, 2)], True)], 0, 1)],
        keep="1 microsecond",
        batch=50,
    )
    # The tick between two segments is thinned away: the row's updates fold
    # across it, but not across the mark after it.
    @example(
        plan=[
            ([], [([("edit_children", 0, 1)], True)], 0, None),
            ([], [([("edit_children", 0, 2)], True)], 0, "after tick"),
            ([], [([("edit_children", 0, 3)], True)], 0, None),
        ],
        keep="1 hour",
        batch=50,
    )
    # A row reworked in two tick segments with no mark between them: each
    # segment folds on its own while the tick between them stays, and the two
    # fold into one once it is thinned away.
    @example(
        plan=[
            ([], [([("update_patient", 0, 1)], True), ([("edit_children", 0, 2)], True)], 0, None),
            ([], [([("update_patient", 0, 3)], True), ([("edit_children", 0, 4)], True)], 0, None),
        ],
        keep="1 microsecond",
        batch=50,
    )
    @example(
        plan=[
            ([], [([("update_patient", 0, 1)], True), ([("update_patient", 0, 2)], True)], 0, None),
            ([], [([("update_patient", 0, 3)], True), ([("update_patient", 0, 4)], True)], 0, None),
        ],
        keep="1 hour",
        batch=50,
    )
    # A patient of no class joins one, children and all, amid rework.
    @example(
        plan=[
            (
                [([("add_loose_patient", 0, 0)], True)],
                [
                    ([("assign_patient", 0, 0), ("update_patient", 0, 1)], True),
                    ([("update_patient", 0, 2)], True),
                ],
                0,
                None,
            ),
        ],
        keep="1 microsecond",
        batch=50,
    )
    def check(plan: list[Segment], keep: str, batch: int) -> None:
        nonlocal folded_examples
        with copy_of(base) as db:
            tenants = rewindkit.tenants(db)
            marks: list[Target] = []
            with psycopg.connect(db.dsn, autocommit=True) as conn:
                for i, (history, reworked, who, where) in enumerate(plan):
                    for ops, commit in history:
                        histories.run_transaction(conn, ops, commit)
                    # The tenant of a patient the rework touches.
                    row = conn.execute(
                        "SELECT tenant_id FROM public.patients WHERE id = %s",
                        (histories.patient(conn, who),),
                    ).fetchone()
                    tenant = str(row[0]) if row and row[0] else tenants[who % len(tenants)]
                    at = where % (len(reworked) + 1) if isinstance(where, int) else None
                    for n in range(len(reworked) + 1):
                        if n == at:
                            time.sleep(0.002)
                            conn.execute("SELECT simtrail.mark(%s, %s)", (tenant, f"m{i}"))
                            marks.append((tenant, f"mark:m{i}"))
                        if n < len(reworked):
                            histories.run_transaction(conn, *reworked[n])
                    time.sleep(0.002)
                    conn.execute("SELECT simtrail.tick()")
                    if where == "after tick":
                        time.sleep(0.002)
                        conn.execute("SELECT simtrail.mark(%s, %s)", (tenant, f"m{i}"))
                        marks.append((tenant, f"mark:m{i}"))
                # Far enough from the others that thinning can spare it alone.
                time.sleep(0.05)
                conn.execute("SELECT simtrail.tick()")

            def tick_times() -> list[str]:
                rows = db.sql("SELECT at FROM simtrail.ticks ORDER BY at")
                return [r["at"].isoformat() for r in rows]

            ticks = tick_times()
            targets = marks + [(t, at) for at in ticks for t in tenants]
            expected = outcomes(db, targets, tenants)
            before_log, before_archive = read_log(db), read_archive(db)
            actors = {
                r["xact_id"]: r["actor"]
                for r in db.sql("SELECT xact_id::text AS xact_id, actor FROM simtrail.transactions")
            }

            # Thin every tick but the last, which stays as the frontier up to
            # which compaction runs: the fine window reaches back to 25 ms
            # before it.
            db.sql(
                "SELECT simtrail.thin_ticks(clock_timestamp() - max(at) + interval '25 ms',"
                " %s::interval) FROM simtrail.ticks",
                (keep,),
            )
            reports = compact_all(db, batch)
            assert all(r["scanned"] <= batch for r in reports)

            kept_ticks = set(tick_times())
            assert kept_ticks <= set(ticks)
            if keep == "1 microsecond":
                assert kept_ticks == set(ticks)
            # Ticks thinned away resolve elsewhere now; marks and kept ticks
            # must not notice compaction.
            still = [(t, x) for t, x in targets if x.startswith("mark:") or x in kept_ticks]
            assert outcomes(db, still, tenants) == {k: expected[k] for k in still}

            if check_exactly_once(
                before_log, before_archive, read_log(db), read_archive(db), actors
            ):
                folded_examples += 1

    check()
    settle()
    # A property that holds because nothing was ever folded proves nothing
    # (hypothesis keeps no statistics for a test defined inside another).
    assert folded_examples > 0
