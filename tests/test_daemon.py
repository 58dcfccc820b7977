"""The real `simtrail daemon` in subprocesses: signals, failover, healing, HTTP."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg

from tests.conftest import Database, run_cli
from tests.daemonkit import eventually, running

FAST = ("--tick-interval", "200ms", "--poll-interval", "200ms", "--heal-interval", "1s")


def trigger_count(db: Database, table: str) -> int:
    return int(
        db.sql(
            "SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = %s::regclass"
            " AND tgname LIKE 'simtrail\\_capture\\_%%'",
            (table,),
        )[0]["n"]
    )


def test_sigterm_finishes_and_exits_zero_within_ten_seconds(
    seeded_db: Database, tmp_path: Path
) -> None:
    with running(seeded_db.dsn, tmp_path, *FAST) as daemon:
        eventually(lambda: daemon.role() == "leader", timeout=10, what="leader")
        sent = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
        assert time.monotonic() - sent < 10
        stopped = daemon.events("daemon stopped")
        assert stopped and stopped[-1]["signal"] == "SIGTERM"
        # It let go of the lease on the way out: a new leader can start at once.
        held = seeded_db.sql(
            "SELECT count(*) AS n FROM simtrail.daemon_lease WHERE expires_at > clock_timestamp()"
        )
        assert held[0]["n"] == 0


def test_sigint_stops_it_too(installed_db: Database, tmp_path: Path) -> None:
    with running(installed_db.dsn, tmp_path, *FAST) as daemon:
        daemon.signal(signal.SIGINT)
        assert daemon.wait(timeout=10) == 0
        assert daemon.events("daemon stopped")[-1]["signal"] == "SIGINT"


def test_sigterm_during_a_compaction_backlog_finishes_the_batch(
    seeded_db: Database, tmp_path: Path
) -> None:
    with psycopg.connect(seeded_db.dsn, autocommit=True) as conn:
        for _ in range(30):
            conn.execute("UPDATE public.patients SET first_name = first_name || 'x'")
            conn.execute("SELECT simtrail.tick()")
    before = seeded_db.sql("SELECT count(*) AS n FROM simtrail.changes")[0]["n"]
    with running(
        seeded_db.dsn, tmp_path, *FAST, "--fine-window", "0", "--coarse-tick-interval", "1ms",
        "--batch-size", "7",
    ) as daemon:
        eventually(lambda: daemon.events("cycle"), timeout=10, what="a cycle")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    # Whatever it got through is whole: every change is in the log or the archive.
    counts = seeded_db.sql(
        "SELECT (SELECT count(*) FROM simtrail.changes WHERE net_from IS NULL)"
        " + (SELECT count(*) FROM simtrail.archive) AS originals"
    )
    assert counts[0]["originals"] == before


def test_standby_takes_over_when_the_leader_is_killed(
    installed_db: Database, tmp_path: Path
) -> None:
    with running(installed_db.dsn, tmp_path, *FAST, name="first") as first:
        eventually(lambda: first.role() == "leader", timeout=10, what="first is leader")
        with running(installed_db.dsn, tmp_path, *FAST, name="second") as second:
            eventually(lambda: second.role() == "standby", timeout=10, what="second stands by")
            time.sleep(1)
            # Only one of them works.
            assert first.role() == "leader" and second.role() == "standby"
            assert second.metrics()["simtrail_leader"] == 0
            ticks_before = installed_db.sql("SELECT count(*) AS n FROM simtrail.ticks")[0]["n"]

            first.signal(signal.SIGKILL)
            first.wait(timeout=5)
            killed = time.monotonic()
            eventually(lambda: second.role() == "leader", timeout=10, what="standby takes over")
            assert time.monotonic() - killed < 5
            assert second.events("became leader")
            # The new leader does the work: ticks keep coming.
            eventually(
                lambda: installed_db.sql("SELECT count(*) AS n FROM simtrail.ticks")[0]["n"]
                > ticks_before + 2,
                timeout=10,
                what="the new leader ticks",
            )


def test_a_new_config_row_gets_a_trigger_without_restart(
    installed_db: Database, tmp_path: Path
) -> None:
    db = installed_db
    db.sql(
        "CREATE TABLE public.sim_extra (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " tenant_id uuid NOT NULL REFERENCES public.tenants (id), note text)"
    )
    with running(db.dsn, tmp_path, *FAST) as daemon:
        eventually(lambda: daemon.role() == "leader", timeout=10, what="leader")
        assert trigger_count(db, "public.sim_extra") == 0

        # The seed's promise: a new feature table is one INSERT.
        db.sql(
            "INSERT INTO public.simulation_table_config (table_name, category, has_tenant_id,"
            " has_patient_id, enabled) VALUES ('sim_extra', 'feature', true, false, true)"
        )
        eventually(lambda: trigger_count(db, "public.sim_extra") > 0, timeout=5, what="attach")
        attached = eventually(
            lambda: [e for e in daemon.events("trigger healed") if e["action"] == "attach"],
            timeout=5,
            what="attach logged",
        )
        assert attached[0]["table"] == "public.sim_extra"
        tenant = db.sql("INSERT INTO public.tenants (name) VALUES ('x') RETURNING id")[0]["id"]
        db.sql("INSERT INTO public.sim_extra (tenant_id, note) VALUES (%s, 'hi')", (tenant,))
        logged = db.sql(
            "SELECT tenant_id, operation FROM simtrail.changes"
            " WHERE table_name = 'public.sim_extra'"
        )
        assert logged == [{"tenant_id": str(tenant), "operation": "INSERT"}]

        # Disabled: the trigger goes.
        db.sql("UPDATE public.simulation_table_config SET enabled = false"
               " WHERE table_name = 'sim_extra'")
        eventually(lambda: trigger_count(db, "public.sim_extra") == 0, timeout=5, what="detach")
        eventually(
            lambda: [e for e in daemon.events("trigger healed") if e["action"] == "detach"],
            timeout=5,
            what="detach logged",
        )


def test_an_outdated_or_dropped_trigger_is_replaced(seeded_db: Database, tmp_path: Path) -> None:
    db = seeded_db
    with running(db.dsn, tmp_path, *FAST) as daemon:
        eventually(lambda: daemon.role() == "leader", timeout=10, what="leader")
        full = trigger_count(db, "public.patients")
        # Someone edits the trigger's comment (its hash) and drops one trigger.
        name = db.sql(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.patients'::regclass"
            " AND tgname LIKE 'simtrail\\_capture\\_%%' ORDER BY tgname LIMIT 1"
        )[0]["tgname"]
        db.sql(f'DROP TRIGGER "{name}" ON public.patients')
        eventually(
            lambda: trigger_count(db, "public.patients") == full, timeout=5, what="re-attached"
        )
        refreshed = eventually(
            lambda: [e for e in daemon.events("trigger healed") if e["action"] == "refresh"],
            timeout=5,
            what="refresh logged",
        )
        assert refreshed[0]["table"] == "public.patients"
        doctor = run_cli("doctor", dsn=db.dsn)
        assert doctor.exit_code == 0, doctor.stdout


def test_sighup_reloads_the_config_file(installed_db: Database, tmp_path: Path) -> None:
    config = tmp_path / "simtrail.toml"
    config.write_text('tick_interval = "200ms"\nbatch_size = 1000\n')
    with running(installed_db.dsn, tmp_path, "--config", str(config)) as daemon:
        eventually(lambda: daemon.role() == "leader", timeout=10, what="leader")
        config.write_text('tick_interval = "200ms"\nbatch_size = 1234\n')
        daemon.signal(signal.SIGHUP)
        reloaded = eventually(
            lambda: daemon.events("settings reloaded"), timeout=5, what="reload logged"
        )
        assert reloaded[-1]["batch_size"] == 1234
        assert daemon.process.poll() is None
        # A broken file keeps the settings in force and the daemon running.
        config.write_text("batch_size = 'lots'\n")
        daemon.signal(signal.SIGHUP)
        failed = eventually(
            lambda: [e for e in daemon.logs() if e.get("event", "").startswith("reload failed")],
            timeout=5,
            what="reload failure logged",
        )
        assert "batch_size" in failed[-1]["error"]
        assert daemon.process.poll() is None
        assert daemon.role() == "leader"


def test_healthz_and_metrics_over_http(seeded_db: Database, tmp_path: Path) -> None:
    db = seeded_db
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for _ in range(3):
            conn.execute("UPDATE public.patients SET first_name = first_name || 'y'")
            conn.execute("SELECT simtrail.tick()")
    tenant = str(db.sql("SELECT id FROM public.tenants ORDER BY name LIMIT 1")[0]["id"])
    db.sql("SELECT simtrail.mark(%s, 'm')", (tenant,))
    db.sql("SELECT simtrail.rewind(%s, 'mark:m', false)", (tenant,))
    with running(
        db.dsn, tmp_path, *FAST, "--fine-window", "0", "--coarse-tick-interval", "1ms",
        "--health-stale-after", "2s",
    ) as daemon:
        code, body = eventually(
            lambda: (lambda h: h if h[1]["role"] == "leader" else None)(daemon.health()),
            timeout=10,
            what="leader health",
        )
        assert code == 200 and body["status"] == "ok"
        assert 0 <= body["last_cycle_age_seconds"] < 2

        def settled() -> dict[str, float] | None:
            samples = daemon.metrics()
            return samples if samples.get("simtrail_archive_rows", 0) > 0 else None

        samples = eventually(settled, timeout=15, what="compaction shows in /metrics")
        time.sleep(0.5)
        # The log figures come from the database, refreshed after compaction.
        counts = db.sql(
            "SELECT (SELECT count(*) FROM simtrail.changes) AS log,"
            " (SELECT count(*) FROM simtrail.archive) AS archive,"
            " (SELECT count(*) FROM simtrail.rewinds) AS rewinds"
        )[0]
        samples = daemon.metrics()
        assert samples["simtrail_log_rows"] == counts["log"]
        assert samples["simtrail_archive_rows"] == counts["archive"]
        assert samples["simtrail_rewinds_total"] == counts["rewinds"] == 1
        assert samples["simtrail_leader"] == 1
        assert samples["simtrail_compacted_rows_total"] > 0
        assert samples["simtrail_cycle_duration_seconds_count"] >= 1
        assert "simtrail_compaction_lag_seconds" in samples
        assert 'simtrail_triggers_healed_total{action="attach"}' in samples
        assert daemon.get("/nope")[0] == 404

        # A cycle that cannot finish (compaction waits on a lock) goes stale.
        with psycopg.connect(db.dsn) as blocker:
            blocker.execute("SELECT simtrail.take_lock('compaction')")
            code, body = eventually(
                lambda: (lambda h: h if h[0] == 503 else None)(daemon.health()),
                timeout=10,
                what="503 when stale",
            )
            assert body["status"] == "stale" and body["last_cycle_age_seconds"] > 2
            blocker.rollback()
        eventually(lambda: daemon.health()[0] == 200, timeout=10, what="healthy again")


def test_each_cycle_logs_one_json_line(installed_db: Database, tmp_path: Path) -> None:
    with running(installed_db.dsn, tmp_path, *FAST) as daemon:
        cycles = eventually(
            lambda: (lambda c: c if len(c) >= 3 else None)(daemon.events("cycle")),
            timeout=10,
            what="three cycles",
        )
        daemon.signal(signal.SIGTERM)
        daemon.wait(timeout=10)
    leader = [c for c in cycles if c["role"] == "leader"]
    assert leader
    for line in leader:
        assert {"ticks", "healed", "compaction_batches", "compaction_archived", "seconds"} <= set(
            line
        )
    assert sum(line["ticks"] for line in leader) >= 2


def test_once_runs_one_cycle(installed_db: Database) -> None:
    done = run_cli("daemon", "--once", dsn=installed_db.dsn)
    assert done.exit_code == 0, done.stderr
    ticks = installed_db.sql("SELECT count(*) AS n FROM simtrail.ticks")[0]["n"]
    assert ticks == 1
    assert '"event": "cycle"' in done.stderr


def test_once_on_a_database_without_simtrail_fails(clinic_db: Database) -> None:
    done = run_cli("daemon", "--once", dsn=clinic_db.dsn)
    assert done.exit_code == 1
    assert "simtrail install" in done.stderr


def test_bad_settings_are_refused_before_anything_starts(installed_db: Database) -> None:
    for args, message in [
        (("--tick-interval", "soon"), "--tick-interval"),
        (("--lease-ttl", "1s"), "lease_ttl"),
        (("--retention-days", "-3"), "--retention-days"),
        (("--health-port", "70000"), "--health-port"),
        (("--vacuum-interval", "often"), "--vacuum-interval"),
    ]:
        done = run_cli("daemon", "--once", *args, dsn=installed_db.dsn)
        assert done.exit_code == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert installed_db.sql("SELECT count(*) AS n FROM simtrail.ticks")[0]["n"] == 0
