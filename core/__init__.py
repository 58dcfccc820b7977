"""simtrail: trigger-based change capture and per-tenant rewind for PostgreSQL.

This package is the shared core (settings, connections, logging, errors); the
components live in the subpackages `simtrail.triggers`, `simtrail.cli` and
`simtrail.daemon`.
"""

__version__ = "0.1.0"
