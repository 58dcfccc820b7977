"""The one exception type the CLI turns into a message and an exit code."""

from __future__ import annotations


class SimtrailError(Exception):
    """A failure the user can act on: its message is one line, shown as is."""

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(" ".join(message.split()))
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(SimtrailError):
    """The DSN, the settings or simulation_table_config are wrong."""


class NotInstalledError(SimtrailError):
    """simtrail's schema is missing from the database."""
