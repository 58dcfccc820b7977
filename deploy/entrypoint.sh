#!/bin/sh
# Container entrypoint: wait for PostgreSQL, then become `simtrail "$@"`.
#
# In compose the database container may report healthy a moment before it
# accepts connections from other containers, and on a restart of the whole
# stack the daemon can come up first. Waiting here, with one line per failed
# attempt, gives a readable log instead of a crash loop.
#
# SIMTRAIL_WAIT_SECONDS (default 60) bounds the wait; 0 skips it. The DSN is
# found the way simtrail finds it: --dsn, SIMTRAIL_DSN, DATABASE_URL, libpq's
# PG* variables, then `dsn` in the TOML file named by --config or
# SIMTRAIL_CONFIG. With none of those there is nothing to wait for and
# simtrail itself reports the missing DSN.
#
# The image has no pg_isready, so the check is a real connection through
# psycopg, the same driver simtrail uses (same TLS, service file and password
# file handling).
set -eu

# The check needs psycopg, so it runs under the interpreter simtrail itself
# runs under (read from the script's #! line); that also covers pipx and
# virtualenv installs where a bare python3 lacks psycopg.
if ! simtrail_bin=$(command -v simtrail); then
    echo "simtrail-entrypoint: simtrail is not on PATH ($PATH)" >&2
    exit 127
fi
python=$(sed -n '1s/^#![[:space:]]*//p' "$simtrail_bin")
python=${python%%[[:space:]]*}
case "${python##*/}" in
    python*) [ -x "$python" ] || python=python3 ;;
    *) python=python3 ;;
esac

# The check runs in the background so that, while this shell is PID 1 of a
# container, `docker stop` (SIGTERM) ends the wait at once: PID 1 ignores
# signals it has no handler for, and a shell only runs traps between commands
# or during `wait`.
"$python" - "$@" <<'EOF' &
import os
import sys
import time
import tomllib

import psycopg

PG_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")


def say(message: str) -> None:
    print(f"simtrail-entrypoint: {message}", file=sys.stderr, flush=True)


def option(args: list[str], name: str) -> str | None:
    # Only the options placed before the subcommand's own ones matter here, but
    # scanning them all is harmless: no other option takes these names.
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1 :]
    return None


def find_dsn(args: list[str]) -> str | None:
    env = os.environ
    dsn = option(args, "--dsn") or env.get("SIMTRAIL_DSN") or env.get("DATABASE_URL")
    if dsn:
        return dsn
    if any(env.get(name) for name in PG_VARIABLES):
        return ""  # an empty conninfo lets libpq read the PG* variables
    path = option(args, "--config") or env.get("SIMTRAIL_CONFIG")
    if path:
        try:
            with open(path, "rb") as f:
                value = tomllib.load(f).get("dsn")
        except (OSError, tomllib.TOMLDecodeError):
            return None  # simtrail reports the unreadable file better
        if isinstance(value, str) and value:
            return value
    return None


def main(args: list[str]) -> int:
    if args[:1] in (["--version"], ["--help"], ["-h"]):
        return 0
    raw = os.environ.get("SIMTRAIL_WAIT_SECONDS", "60")
    try:
        budget = float(raw)
    except ValueError:
        say(f"SIMTRAIL_WAIT_SECONDS must be a number of seconds, not {raw!r}")
        return 2
    dsn = find_dsn(args)
    if budget <= 0 or dsn is None:
        return 0
    deadline = time.monotonic() + budget
    attempt = 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        try:
            # libpq rounds connect_timeout below 2 up to 2.
            with psycopg.connect(dsn, connect_timeout=max(2, min(10, int(left)))):
                return 0
        except psycopg.Error as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            reason = lines[0] if lines else type(exc).__name__
            left = deadline - time.monotonic()
            say(f"database not ready (attempt {attempt}, {max(0, left):.0f}s left): {reason}")
        if left <= 0:
            say(f"gave up after {budget:g}s (SIMTRAIL_WAIT_SECONDS)")
            return 1
        time.sleep(min(1.0, left))


sys.exit(main(sys.argv[1:]))
EOF
waiter=$!
trap 'kill -TERM "$waiter" 2>/dev/null || :; exit 143' TERM
trap 'kill -TERM "$waiter" 2>/dev/null || :; exit 130' INT
status=0
wait "$waiter" || status=$?
trap - TERM INT
if [ "$status" -ne 0 ]; then
    exit "$status"
fi

exec simtrail "$@"
