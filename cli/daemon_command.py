"""`simtrail daemon`: the long-running worker, for systemd or a container."""

from __future__ import annotations

import sys
from typing import Any

import click

from simtrail.cli.app import App
from simtrail.cli.options import pass_app
from simtrail.daemon.worker import run_daemon

# Flags carry no envvar of their own: the settings loader applies the
# SIMTRAIL_* variables below the flags and above the TOML file.
_DURATION = "DURATION"


@click.command()
@click.option("--once", is_flag=True,
              help="Run one cycle, then exit: 0 when it worked, 1 when it failed or refused a"
                   " config row.")
@click.option("--config", type=click.Path(dir_okay=False), help="TOML settings file.")
@click.option("--tick-interval", metavar=_DURATION, help="Record a tick this often [1s].")
@click.option("--poll-interval", metavar=_DURATION, help="Longest wait between cycles [1s].")
@click.option("--fine-window", metavar=_DURATION, help="History kept change by change [24h].")
@click.option("--coarse-tick-interval", metavar=_DURATION,
              help="Older than the fine window, keep one tick per [1h].")
@click.option("--retention-days", metavar="DAYS", help="Drop archived history older [0: never].")
@click.option("--batch-size", metavar="ROWS", help="Log rows per compaction transaction [50000].")
@click.option("--vacuum-interval", metavar=_DURATION,
              help="Vacuum and pack the log after compaction at most this often [10m; off: never].")
@click.option("--heal-interval", metavar=_DURATION, help="Re-sync triggers this often [5s].")
@click.option("--health-port", metavar="PORT", help="Serve /healthz and /metrics here [off].")
@click.option("--health-host", metavar="HOST", help="Address for the health port [127.0.0.1].")
@click.option("--health-stale-after", metavar=_DURATION,
              help="/healthz answers 503 when the last cycle is older [30s].")
@click.option("--lease-ttl", metavar=_DURATION, help="Leader lease lifetime [10s].")
@click.option("--lease-retry", metavar=_DURATION, help="Leader lease check timeout [2s].")
@click.option("--sign-key", metavar="FILE",
              help="Ed25519 private key: sign the checkpoint and prune records written [off].")
@click.option("--log-level", "daemon_log_level", metavar="LEVEL",
              help="debug, info, warning or error [info].")
@pass_app
def daemon(app: App, /, once: bool, daemon_log_level: str | None, **options: Any) -> None:
    """Record ticks, compact and archive the log, apply retention and keep triggers in place.

    Settings come from flags, then SIMTRAIL_* variables, then the TOML file.
    SIGTERM or SIGINT finishes the current batch, cancels a VACUUM and exits 0; SIGHUP reloads.
    """
    flags: dict[str, object] = {k: v for k, v in options.items() if v is not None}
    flags["dsn"] = app.dsn_option
    if daemon_log_level is not None:
        flags["log_level"] = daemon_log_level
    sys.exit(run_daemon(flags, once=once))
