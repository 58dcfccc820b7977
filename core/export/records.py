"""The export's place in the record chain: its own record, and the records
before it that records.jsonl carries for an auditor to check offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from simtrail import signing
from simtrail.db import Conn
from simtrail.export import fileformat as ff
from simtrail.sqlfile import query

BATCH = 5000


def q(name: str) -> psycopg.sql.SQL:
    return query("simtrail.export", "sql/queries.sql", name)


def append(conn: Conn, manifest: dict[str, Any],
           key: signing.Signer | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Append the export record naming the manifest's hash; sign it when a key is given."""
    body = {
        "v": 1, "kind": "export", "at": manifest["created_at"],
        "manifest_sha256": ff.core_sha256(manifest),
        "heads": [{"tenant_id": c["tenant_id"], "seq": c["last_seq"], "hash": c["head"]}
                  for c in manifest["chains"]],
        "filters": manifest["filters"],
    }
    added = conn.execute(q("append_export_record"), {"body": json.dumps(body)}).fetchone()
    assert added is not None
    row = conn.execute(q("record"), {"id": added["id"]}).fetchone()
    assert row is not None
    record = {"id": row["id"], "prev_hash": bytes(row["prev_hash"]).hex(),
              "hash": bytes(row["hash"]).hex(), "body": row["body"]}
    if key is None:
        return record, None
    signature = key.sign(bytes(row["hash"]))
    conn.execute(q("sign_record"), {"id": row["id"], "signature": signature,
                                    "key_id": key.key_id})
    return record, {"algorithm": "ed25519", "key_id": key.key_id, "value": signature.hex()}


def between(conn: Conn, tmp: Path, after: int, upto: int) -> dict[str, Any]:
    """records.jsonl: the record chain between the previous export's record and this one's.

    Read while append_record's lock is held, so nothing is appended in between.
    """
    count = 0
    with (tmp / ff.RECORDS).open("w", encoding="utf-8") as f, conn.cursor(name="records") as cur:
        cur.itersize = BATCH
        cur.execute(q("records_between"), {"after": after, "id": upto})
        for row in cur:
            f.write(json.dumps(dict(row), sort_keys=True, ensure_ascii=False) + "\n")
            count += 1
    return {"file": ff.RECORDS, "after_id": after, "count": count}
