"""Seal the log into per-tenant hash chains (simtrail.seal_batch), sign the
checkpoints a seal writes, and check every chain inside the database.

Each batch is its own transaction, its signature included: a seal killed at
any moment leaves whole batches behind, each signed if a key was given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from simtrail import signing
from simtrail.db import Conn
from simtrail.errors import ConfigError
from simtrail.signing import Signer
from simtrail.sqlfile import query
from simtrail.triggers.installer import PACKAGE, require_installed

DEFAULT_BATCH = 50_000


def _q(name: str) -> psycopg.sql.SQL:
    return query(PACKAGE, "sql/seal_queries.sql", name)


def sign_record(conn: Conn, record_id: int, signer: Signer) -> None:
    row = conn.execute(_q("record_hash"), {"id": record_id}).fetchone()
    if row is None:
        raise ConfigError(f"chain record {record_id} does not exist")
    signature = signer.sign(bytes(row["hash"]))
    conn.execute(
        _q("sign_record"), {"id": record_id, "signature": signature, "key_id": signer.key_id}
    )


def seal(
    conn: Conn,
    *,
    batch: int = DEFAULT_BATCH,
    signer: Signer | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Seal batches until nothing more can be sealed now."""
    if batch < 1:
        raise ConfigError("a seal batch must hold at least one change")
    require_installed(conn)
    sealed = 0
    records: list[int] = []
    batches = 0
    while True:
        with conn.transaction():
            row = conn.execute(_q("seal_batch"), {"limit": batch}).fetchone()
            assert row is not None
            result = row["result"]
            record_id = result.get("record_id")
            if record_id is not None:
                records.append(int(record_id))
                if signer is not None:
                    sign_record(conn, int(record_id), signer)
        sealed += int(result["sealed"])
        batches += 1
        if progress is not None:
            progress(sealed)
        if result["done"]:
            break
    return {
        "sealed": sealed,
        "batches": batches,
        "records": records,
        "signed": bool(signer) and bool(records),
        "key_id": signer.key_id if signer else None,
    }


def verify_db(
    conn: Conn, *, tenant: str | None = None, public_key: Ed25519PublicKey | None = None
) -> dict[str, Any]:
    """Recompute every chain (or one tenant's) and the record chain; the first problem.

    With a public key, every signed record must verify with it; records it
    did not sign (another key_id) are a problem too, since the key is the
    one the auditor trusts.
    """
    require_installed(conn)
    with conn.transaction():
        # One snapshot for the whole check: a seal committing meanwhile
        # must not look like a missing or an extra one.
        conn.execute(_q("repeatable_read"))
        params = {"tenant": tenant, "all": tenant is None}
        row = conn.execute(_q("verify_chains"), params).fetchone()
        assert row is not None
        report: dict[str, Any] = dict(row["result"])
        records = conn.execute(_q("records")).fetchall()
    if not report["ok"] or public_key is None:
        return report
    expected = signing.key_id(public_key)
    signatures = 0
    for record in records:
        if record["signature"] is None:
            continue
        good = record["key_id"] == expected and signing.verify(
            public_key, bytes(record["signature"]), bytes(record["hash"])
        )
        if not good:
            return {
                "ok": False,
                "problem": {
                    "kind": "bad_signature",
                    "message": f"the {record['kind']} record's signature does not verify"
                    f" with key {expected}",
                    "record_id": record["id"],
                },
            }
        signatures += 1
    report["signatures"] = signatures
    return report
