"""Daemon settings: flags win over SIMTRAIL_* variables, which win over the TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from simtrail.daemon.settings import NAMES, DaemonSettings, env_name, load, parse_duration
from simtrail.errors import ConfigError

DSN = "host=db.example user=simtrail dbname=app"


def test_defaults() -> None:
    settings = load({"dsn": DSN}, {})
    assert settings == DaemonSettings(dsn=DSN)
    assert settings.fine_window == 86400 and settings.tick_interval == 1
    assert settings.retention_days == 0 and settings.health_port is None


def test_flag_beats_variable_beats_file(tmp_path: Path) -> None:
    config = tmp_path / "simtrail.toml"
    config.write_text(
        'tick_interval = "5s"\nbatch_size = 10\nfine_window = "2h"\nhealth_port = 9\n'
    )
    env = {
        "SIMTRAIL_TICK_INTERVAL": "3s",
        "SIMTRAIL_BATCH_SIZE": "20",
        "SIMTRAIL_CONFIG": str(config),
    }
    settings = load({"dsn": DSN, "tick_interval": "2s"}, env)
    assert settings.tick_interval == 2  # flag
    assert settings.batch_size == 20  # variable over file
    assert settings.fine_window == 7200  # file
    assert settings.health_port == 9
    assert settings.config == str(config)


def test_dsn_order(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text('dsn = "host=from-file"\n')
    assert load({"config": str(config)}, {}).dsn == "host=from-file"
    assert load({"config": str(config)}, {"DATABASE_URL": "postgresql://env/x"}).dsn == (
        "postgresql://env/x"
    )
    assert (
        load({"config": str(config), "dsn": DSN}, {"DATABASE_URL": "postgresql://e/x"}).dsn == DSN
    )
    assert load({}, {}).dsn is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("1s", 1), ("10m", 600), ("24h", 86400), ("7d", 604800), ("2.5", 2.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration("x", text) == seconds


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"tick_interval": "soon"}, {}, "--tick-interval: expected a duration"),
        ({}, {"SIMTRAIL_POLL_INTERVAL": "0"}, "SIMTRAIL_POLL_INTERVAL: must be longer than zero"),
        ({"batch_size": "0"}, {}, "--batch-size: must be at least 1"),
        ({"health_port": "99999"}, {}, "not a TCP port"),
        ({"log_level": "loud"}, {}, "--log-level: expected one of"),
        ({"lease_ttl": "3s"}, {}, "lease_ttl (3s) must be at least"),
        ({"retention_days": "0.5"}, {}, "--retention-days: expected a whole number"),
        ({"config": "/nonexistent/simtrail.toml"}, {}, "does not exist"),
        ({"vacuum_interval": "often"}, {}, "--vacuum-interval: expected a duration"),
        ({}, {"SIMTRAIL_VACUUM_INTERVAL": "-5m"}, "SIMTRAIL_VACUUM_INTERVAL: expected a duration"),
    ],
)
def test_bad_values_are_refused(
    flags: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        load({"dsn": DSN, **flags}, env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_vacuum_interval_takes_a_duration_or_off() -> None:
    assert load({"dsn": DSN}, {}).vacuum_interval == 600
    assert load({"dsn": DSN, "vacuum_interval": "30m"}, {}).vacuum_interval == 1800
    assert load({"dsn": DSN}, {"SIMTRAIL_VACUUM_INTERVAL": "OFF"}).vacuum_interval == 0
    assert load({"dsn": DSN, "vacuum_interval": "0"}, {}).vacuum_interval == 0


def test_bad_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text("tick_interval = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load({"config": str(config)}, {})
    config.write_text("tick_intervall = '1s'\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load({"config": str(config)}, {})


def test_retention_must_cover_the_fine_window() -> None:
    with pytest.raises(ConfigError, match="retention_days"):
        load({"dsn": DSN, "retention_days": "1", "fine_window": "48h"}, {})


def test_every_setting_is_documented() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = (Path(__file__).parent.parent / "deploy" / "simtrail.toml.example").read_text()
    for name in NAMES:
        if name == "dsn":
            assert "SIMTRAIL_DSN" in readme
            continue
        assert env_name(name) in readme, env_name(name)
        assert f"--{name.replace('_', '-')}" in readme, name
        assert name in example, name
