"""Helpers for copy tests: a tenant's content with keys taken out, and its reference shape.

Two tenants hold the same content when, table by table, the multiset of their
rows is equal once the key, the tenant column, every reference column and every
ruled column are left out; they have the same shape when, reference by
reference, as many rows point inside their own tenant (and at the same kind of
row). A correct copy gives both; a copy that swaps, drops or leaks a
reference changes the shape.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from psycopg import sql

from tests.conftest import Database

Content = dict[str, Counter[str]]


def _left_out(db: Database, table: str) -> set[str]:
    rows = db.sql(
        "SELECT t.pk_columns, t.tenant_path ->> 'tenant_column' AS tenant_column,"
        " pg_catalog.jsonb_array_length(t.tenant_path -> 'hops') AS hops,"
        " ARRAY(SELECT pg_catalog.unnest(r.columns) FROM simtrail.references() AS r"
        "       WHERE r.table_name = t.table_name) AS ref_columns,"
        " ARRAY(SELECT q.column_name FROM simtrail.copy_rules AS q"
        "       WHERE q.table_name = t.table_name AND q.rule <> 'keep') AS ruled"
        " FROM simtrail.captured_tables AS t WHERE t.table_name = %s",
        (table,),
    )[0]
    out = set(rows["pk_columns"]) | set(rows["ref_columns"]) | set(rows["ruled"])
    if rows["hops"] == 0:
        out.add(rows["tenant_column"])
    return out


def tables(db: Database) -> list[str]:
    return [r["table_name"] for r in db.sql("SELECT table_name FROM simtrail.captured_tables")]


def rows_of(db: Database, table: str, tenant: str) -> list[dict[str, Any]]:
    """The tenant's rows of a captured table, as to_jsonb objects."""
    relation = db.sql("SELECT simtrail.tenant_rows_sql(%s, %s, false) AS r", (table, tenant))[0][
        "r"
    ]
    query = sql.SQL("SELECT pg_catalog.to_jsonb(x.*) AS row FROM {} AS x").format(sql.SQL(relation))
    return [r["row"] for r in db.sql(query.as_string(None))]


def content(db: Database, tenant: str) -> Content:
    result: Content = {}
    for table in tables(db):
        out = _left_out(db, table)
        result[table] = Counter(
            repr(sorted((k, v) for k, v in row.items() if k not in out))
            for row in rows_of(db, table, tenant)
        )
    return result


def shape(db: Database, tenant: str) -> dict[str, tuple[int, int]]:
    """Per reference: (rows with a value, rows whose value finds a row of the same tenant)."""
    result: dict[str, tuple[int, int]] = {}
    for ref in db.sql("SELECT * FROM simtrail.references() ORDER BY name"):
        child = db.sql(
            "SELECT simtrail.tenant_rows_sql(%s, %s, false) AS r", (ref["table_name"], tenant)
        )
        parent = db.sql(
            "SELECT simtrail.tenant_rows_sql(%s, %s, false) AS r", (ref["ref_table"], tenant)
        )
        child_key = sql.SQL(", ").join(
            sql.SQL("c.{}::text").format(sql.Identifier(c)) for c in ref["columns"]
        )
        parent_key = sql.SQL(", ").join(
            sql.SQL("p.{}::text").format(sql.Identifier(c)) for c in ref["ref_columns"]
        )
        not_null = sql.SQL(" AND ").join(
            sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c)) for c in ref["columns"]
        )
        query = sql.SQL(
            "SELECT count(*) AS n, count(*) FILTER (WHERE EXISTS ("
            " SELECT 1 FROM {parent} AS p WHERE ROW({parent_key}) = ROW({child_key}))) AS inside"
            " FROM {child} AS c WHERE {not_null}"
        ).format(
            parent=sql.SQL(parent[0]["r"]),
            child=sql.SQL(child[0]["r"]),
            parent_key=parent_key,
            child_key=child_key,
            not_null=not_null,
        )
        row = db.sql(query.as_string(None))[0]
        result[ref["name"]] = (int(row["n"]), int(row["inside"]))
    return result


def keys_shared(db: Database, source: str, target: str) -> int:
    """How many primary keys of the target's rows are also keys of the source's."""
    shared = 0
    for table in tables(db):
        pk = db.sql(
            "SELECT pk_columns FROM simtrail.captured_tables WHERE table_name = %s", (table,)
        )
        columns = pk[0]["pk_columns"]

        def keys(tenant: str, columns: list[str] = columns, table: str = table) -> set[str]:
            return {repr([row[c] for c in columns]) for row in rows_of(db, table, tenant)}

        shared += len(keys(source) & keys(target))
    return shared


def counts(db: Database) -> dict[str, int]:
    """Rows of simtrail's log and copies, and of every captured table: 'nothing written'."""
    result = {
        "changes": int(db.sql("SELECT count(*) AS n FROM simtrail.changes")[0]["n"]),
        "copies": int(db.sql("SELECT count(*) AS n FROM simtrail.copies")[0]["n"]),
        "copy_keys": int(db.sql("SELECT count(*) AS n FROM simtrail.copy_keys")[0]["n"]),
        "marks": int(db.sql("SELECT count(*) AS n FROM simtrail.marks")[0]["n"]),
    }
    for table in tables(db):
        query = sql.SQL("SELECT count(*) AS n FROM {}").format(sql.SQL(table))
        result[table] = int(db.sql(query.as_string(None))[0]["n"])
    return result
