"""One reading of a time for every command: ISO-8601, an offset or a named zone, no words."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from simtrail.times import NotATimeError, TimeInputError, parse_time
from tests import rewindkit
from tests.conftest import Database, run_cli

WORDS = ["now", "today", "tomorrow", "yesterday", "epoch", "infinity", "-infinity", "NOW",
         "allballs"]


def no_zone() -> str:
    raise AssertionError("the zone must only be looked up for a time without an offset")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T09:30:00+01:00", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
        ("2026-12-01T08:30:00Z", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
        ("2026-12-01 08:30:00.250-00:00", datetime(2026, 12, 1, 8, 30, 0, 250000, tzinfo=UTC)),
        ("  2026-12-01T14:00+05:30 ", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_a_time_with_an_offset_needs_no_zone(text: str, expected: datetime) -> None:
    parsed = parse_time(text, no_zone)
    assert parsed.value == expected and parsed.zone is None and parsed.warning() is None


def test_a_time_without_an_offset_is_read_in_the_zone_and_says_so() -> None:
    winter = parse_time("2026-12-01 09:30", "Europe/Berlin")
    assert winter.value == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    summer = parse_time("2026-07-01T09:30:00", "Europe/Berlin")
    assert summer.value == datetime(2026, 7, 1, 7, 30, tzinfo=UTC)
    warning = winter.warning()
    assert warning is not None and "Europe/Berlin" in warning and "no UTC offset" in warning
    assert parse_time("2026-12-01", "UTC").value == datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("word", WORDS)
def test_words_postgres_would_accept_are_refused(word: str) -> None:
    with pytest.raises(TimeInputError, match="is refused as a time") as caught:
        parse_time(word, no_zone)
    assert "\n" not in str(caught.value) and caught.value.exit_code == 2


@pytest.mark.parametrize("text", ["half past nine", "12/01/2026 09:30", "2026-13-01T00:00Z", ""])
def test_what_is_not_iso_8601_is_refused(text: str) -> None:
    with pytest.raises(TimeInputError):
        parse_time(text, "UTC")
    if text:
        with pytest.raises(NotATimeError):
            parse_time(text, "UTC")


def test_daylight_saving_gaps_and_folds_are_refused_without_an_offset() -> None:
    with pytest.raises(TimeInputError, match="does not exist in time zone Europe/Berlin"):
        parse_time("2026-03-29T02:30:00", "Europe/Berlin")
    with pytest.raises(TimeInputError, match="is ambiguous in time zone Europe/Berlin"):
        parse_time("2026-10-25T02:30:00", "Europe/Berlin")
    with pytest.raises(TimeInputError, match="unknown time zone"):
        parse_time("2026-10-25T02:30:00", "Mars/Olympus")


@pytest.mark.parametrize("word", WORDS)
def test_the_sql_function_refuses_the_same_words(seeded_db: Database, word: str) -> None:
    tenant = rewindkit.tenants(seeded_db)[0]
    before = rewindkit.log_size(seeded_db), rewindkit.all_states(seeded_db)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="is refused as a time"):
        rewindkit.rewind(seeded_db, tenant, word)
    assert (rewindkit.log_size(seeded_db), rewindkit.all_states(seeded_db)) == before


def test_the_sql_function_refuses_a_time_without_an_offset(seeded_db: Database) -> None:
    tenant = rewindkit.tenants(seeded_db)[0]
    for text in ("2026-12-01 09:30:00", "2026-12-01"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="has no UTC offset"):
            rewindkit.rewind(seeded_db, tenant, text)
    assert seeded_db.sql("SELECT simtrail.parse_time('2026-12-01 09:30:00.5+01') AS t")[0][
        "t"
    ] == datetime(2026, 12, 1, 8, 30, 0, 500000, tzinfo=UTC)


@pytest.mark.parametrize(("command", "option"), [("rewind", "--to"), ("history", "--since")])
@pytest.mark.parametrize("word", ["now", "yesterday", "epoch", "infinity"])
def test_every_command_refuses_the_words_in_one_line(
    seeded_db: Database, command: str, option: str, word: str
) -> None:
    tenant = rewindkit.tenants(seeded_db)[0]
    log = rewindkit.log_size(seeded_db)
    result = run_cli(command, "--tenant", tenant, option, word, dsn=seeded_db.dsn)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "is refused as a time" in result.stderr
    assert rewindkit.log_size(seeded_db) == log


def test_history_since_reads_a_time_without_an_offset_in_the_named_zone(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    db.sql("UPDATE public.patients SET room_number = 'tz' WHERE tenant_id = %s", (tenant,))
    changed: datetime = db.sql(
        "SELECT max(changed_at) AS t FROM simtrail.changes WHERE tenant_id = %s", (tenant,)
    )[0]["t"]
    just_after = changed + timedelta(milliseconds=1)
    # The same wall-clock text, read in two zones 11 hours apart.
    pago_pago = just_after.astimezone(timezone(timedelta(hours=-11))).replace(tzinfo=None)
    text = pago_pago.isoformat()

    def since(*extra: str) -> tuple[int, str]:
        result = run_cli(
            "history", "--tenant", tenant, "--since", text, "--json", *extra, dsn=db.dsn
        )
        assert result.exit_code == 0, result.stderr
        return len(json.loads(result.stdout)), result.stderr

    assert since("--tz", "Pacific/Pago_Pago")[0] == 0
    count, warning = since("--tz", "UTC")
    assert count > 0
    assert "no UTC offset; read in time zone UTC" in warning
    # Without --tz: the session's TimeZone, named in the warning.
    zone = db.sql("SELECT current_setting('TimeZone') AS z")[0]["z"]
    assert f"read in time zone {zone}" in since()[1]
    bad = run_cli("history", "--tenant", tenant, "--since", text, "--tz", "Nowhere/Land",
                  dsn=db.dsn)
    assert bad.exit_code == 2 and "unknown time zone 'Nowhere/Land'" in bad.stderr
