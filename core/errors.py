"""The one exception type the CLI turns into a message and an exit code."""

from __future__ import annotations

# Exit codes, documented in `simtrail --help` and the README.
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_INTERRUPTED = 4


class SimtrailError(Exception):
    """A failure the user can act on: its message is one line, shown as is."""

    exit_code = EXIT_BAD_INPUT
    kind = "bad_input"

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(" ".join(message.split()))
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(SimtrailError):
    """The DSN, the settings or simulation_table_config are wrong."""


class NotInstalledError(SimtrailError):
    """simtrail's schema is missing from the database."""


class SessionInterrupted(SimtrailError):
    """The server cancelled or ended the session, or the connection broke.

    Not bad input: the same command may well work when run again.
    """

    exit_code = EXIT_INTERRUPTED
    kind = "interrupted"
