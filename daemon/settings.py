"""The daemon's settings: flags, then SIMTRAIL_* variables, then a TOML file.

Every setting has one name; its flag is `--name-with-dashes`, its variable
`SIMTRAIL_NAME` and its TOML key `name`. SIGHUP loads them again.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from simtrail.errors import ConfigError
from simtrail.settings import resolve_dsn

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_duration(name: str, value: object) -> float:
    """Seconds from "500ms", "1s", "10m", "24h", "7d" or a plain number."""
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a duration such as 1s, 10m or 24h, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(
                f"{name}: expected a duration such as 1s, 10m or 24h, got {str(value)!r}"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return seconds


def parse_count(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a whole number, got {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {str(value)!r}") from None
    if number < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {number}")
    return number


@dataclass(frozen=True)
class DaemonSettings:
    dsn: str | None = None
    config: str | None = None
    tick_interval: float = 1.0
    poll_interval: float = 1.0
    fine_window: float = 86400.0
    coarse_tick_interval: float = 3600.0
    retention_days: int = 0
    batch_size: int = 50_000
    # 0 turns the daemon's own VACUUM of the log off.
    vacuum_interval: float = 600.0
    heal_interval: float = 5.0
    health_port: int | None = None
    health_host: str = "127.0.0.1"
    health_stale_after: float = 30.0
    lease_ttl: float = 10.0
    lease_retry: float = 2.0
    log_level: str = "info"
    # Ed25519 private key (simtrail keygen): the records the daemon writes are signed.
    sign_key: str | None = None

    def public(self) -> dict[str, Any]:
        """Everything but the DSN (it may hold a password), for logs."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "dsn"}


def _port(name: str, value: object) -> int | None:
    if value is None or str(value).strip() == "":
        return None
    port = parse_count(name, value, minimum=0)
    if port > 65535:
        raise ConfigError(f"{name}: {port} is not a TCP port")
    return port


def _level(name: str, value: object) -> str:
    level = str(value).strip().lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{name}: expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def _duration_or_off(name: str, value: object) -> float:
    if isinstance(value, str) and value.strip().lower() == "off":
        return 0.0
    try:
        seconds = parse_duration(name, value)
    except ConfigError:
        raise ConfigError(
            f"{name}: expected a duration such as 10m or 1h, or off, got {str(value)!r}"
        ) from None
    return seconds


def _positive_duration(name: str, value: object) -> float:
    seconds = parse_duration(name, value)
    if seconds <= 0:
        raise ConfigError(f"{name}: must be longer than zero")
    return seconds


def _key_path(name: str, value: object) -> str | None:
    path = str(value).strip()
    if not path:
        return None
    if not Path(path).is_file():
        raise ConfigError(f"{name}: signing key {path} is not a file")
    return path


_PARSERS: dict[str, Callable[[str, object], Any]] = {
    "dsn": lambda _n, v: str(v),
    "config": lambda _n, v: str(v),
    "tick_interval": _positive_duration,
    "poll_interval": _positive_duration,
    "fine_window": parse_duration,
    "coarse_tick_interval": _positive_duration,
    "retention_days": lambda n, v: parse_count(n, v, minimum=0),
    "batch_size": lambda n, v: parse_count(n, v, minimum=1),
    "vacuum_interval": _duration_or_off,
    "heal_interval": _positive_duration,
    "health_port": _port,
    "health_host": lambda _n, v: str(v),
    "health_stale_after": _positive_duration,
    "lease_ttl": _positive_duration,
    "lease_retry": _positive_duration,
    "log_level": _level,
    "sign_key": _key_path,
}
NAMES = tuple(_PARSERS)


def env_name(name: str) -> str:
    return f"SIMTRAIL_{name.upper()}"


def _read_toml(path: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(NAMES) - {"config"})
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def load(flags: Mapping[str, object], environ: Mapping[str, str] | None = None) -> DaemonSettings:
    """Resolve every setting: a flag wins over a variable, a variable over the file."""
    env = os.environ if environ is None else environ
    config = flags.get("config") or env.get(env_name("config")) or None
    from_file = _read_toml(str(config)) if config else {}
    values: dict[str, Any] = {}
    for name in NAMES:
        if name == "dsn":
            continue
        raw: object = flags.get(name)
        source = f"--{name.replace('_', '-')}"
        if raw is None and env.get(env_name(name)) not in (None, ""):
            raw, source = env[env_name(name)], env_name(name)
        if raw is None and name in from_file:
            raw, source = from_file[name], f"{config}: {name}"
        if raw is not None:
            values[name] = _PARSERS[name](source, raw)
    # The DSN follows the other commands (--dsn/SIMTRAIL_DSN, DATABASE_URL,
    # PG* variables); the file's `dsn` is the last resort.
    dsn = resolve_dsn(str(flags["dsn"]) if flags.get("dsn") else None, env)
    if dsn is None and "dsn" in from_file:
        dsn = resolve_dsn(str(from_file["dsn"]), {})
    settings = DaemonSettings(dsn=dsn, **values)
    check(settings)
    return settings


def check(settings: DaemonSettings) -> None:
    """Rules between settings, checked before anything starts."""
    # Patroni's rule: a standby must be able to notice a dead leader, and a
    # leader to notice it lost the lease, before the lease would expire.
    if settings.poll_interval + 2 * settings.lease_retry > settings.lease_ttl:
        raise ConfigError(
            f"lease_ttl ({settings.lease_ttl:g}s) must be at least poll_interval + 2 x lease_retry"
            f" ({settings.poll_interval + 2 * settings.lease_retry:g}s)"
        )
    if settings.retention_days and settings.retention_days * 86400 < settings.fine_window:
        raise ConfigError(
            f"retention_days ({settings.retention_days}) must cover the fine window"
            f" ({settings.fine_window / 3600:g}h)"
        )
