"""Replaying the log: what the captured history says each table holds.

If capture missed, duplicated or misattributed any change, the replayed state
differs from the live tables, or a row's tenant differs from the one its
images lead to. Both checks read only the log and the catalog.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.conftest import Database

Key = str  # canonical JSON of a primary key


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@dataclass
class Table:
    name: str
    pk: list[str]
    path: dict[str, Any]

    def key(self, image: dict[str, Any]) -> Key:
        return canon({c: image[c] for c in self.pk})


@dataclass
class Replay:
    tables: dict[str, Table]
    state: dict[str, dict[Key, dict[str, Any]]] = field(default_factory=dict)
    # Every image ever seen per table, so a child can find a parent that a
    # cascade already removed.
    known: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    row_tenant: dict[tuple[str, Key], str | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def tenant_of(self, table: str, image: dict[str, Any]) -> str | None:
        t = self.tables[table]
        current = image
        for hop in t.path["hops"]:
            value = current.get(hop["column"])
            if value is None:
                return None
            parents = [
                img
                for img in reversed(self.known.get(hop["parent"], []))
                if img.get(hop["parent_column"]) == value
            ]
            if not parents:
                return None
            current = parents[0]
        tenant = current.get(t.path["tenant_column"])
        return None if tenant is None else str(tenant)

    def apply(self, change: dict[str, Any]) -> None:
        table = self.tables[change["table_name"]]
        rows = self.state.setdefault(table.name, {})
        old, new, moved = change["old_data"], change["new_data"], change["moved"]
        op = change["operation"]
        key_old = table.key(old) if old is not None else None
        key_new = table.key(new) if new is not None else None
        image = new if new is not None else old
        assert image is not None
        if moved is None:
            expected = self.tenant_of(table.name, image)
            if op in ("DELETE", "TRUNCATE"):
                expected = self.tenant_of(table.name, old)
            if change["tenant_id"] != expected:
                self.problems.append(
                    f"change {change['id']} ({op} {table.name}) has tenant "
                    f"{change['tenant_id']}, its images lead to {expected}"
                )
        elif moved == "out":
            before = self.row_tenant.get((table.name, key_old or ""))
            if change["tenant_id"] != before:
                self.problems.append(
                    f"change {change['id']} moves {table.name} out of {change['tenant_id']}, "
                    f"but the row belonged to {before}"
                )
        elif moved == "in":
            expected = self.tenant_of(table.name, new)
            if change["tenant_id"] != expected:
                self.problems.append(
                    f"change {change['id']} moves {table.name} into {change['tenant_id']}, "
                    f"its new image leads to {expected}"
                )
        if key_old is not None and key_old in rows and op != "INSERT":
            del rows[key_old]
        if op in ("INSERT", "UPDATE") and new is not None and key_new is not None:
            rows[key_new] = new
            self.known.setdefault(table.name, []).append(new)
            self.row_tenant[(table.name, key_new)] = (
                change["tenant_id"] if moved != "out" else (self.tenant_of(table.name, new))
            )

    def check_membership(self) -> None:
        """Each row's last attribution must be the tenant its current image leads to.

        A row that silently followed its parent to another tenant, with no
        'out'/'in' entries, would still be attributed to the old one.
        """
        for table, rows in self.state.items():
            for key, image in rows.items():
                expected = self.tenant_of(table, image)
                logged = self.row_tenant.get((table, key))
                if logged != expected:
                    self.problems.append(
                        f"{table} {key} last logged under tenant {logged}, "
                        f"now belongs to {expected}"
                    )


def captured_tables(db: Database) -> dict[str, Table]:
    return {
        r["table_name"]: Table(r["table_name"], list(r["pk_columns"]), r["tenant_path"])
        for r in db.sql("SELECT table_name, pk_columns, tenant_path FROM simtrail.captured_tables")
    }


def replay(db: Database, baseline: dict[str, dict[Key, dict[str, Any]]] | None = None) -> Replay:
    tables = captured_tables(db)
    result = Replay(tables, state={k: dict(v) for k, v in (baseline or {}).items()})
    changes = db.sql(
        "SELECT id, tenant_id, table_name, operation, old_data, new_data, moved "
        "FROM simtrail.changes ORDER BY id"
    )
    for change in changes:
        result.apply(change)
    result.check_membership()
    return result


def live_state(db: Database) -> dict[str, dict[Key, dict[str, Any]]]:
    state: dict[str, dict[Key, dict[str, Any]]] = {}
    for name, table in captured_tables(db).items():
        rows = db.sql(f"SELECT to_jsonb(t.*) AS img FROM {name} AS t")  # catalog-sourced name
        state[name] = {table.key(r["img"]): r["img"] for r in rows}
    return state


def replay_tenant(db: Database, tenant: str) -> dict[str, dict[Key, dict[str, Any]]]:
    """One tenant's rows as its own log alone says they are: a row that left
    must have an 'out' there, and one that entered an 'in'."""
    tables = captured_tables(db)
    state: dict[str, dict[Key, dict[str, Any]]] = {name: {} for name in tables}
    changes = db.sql(
        "SELECT table_name, operation, row_pk, old_pk, new_data, moved"
        " FROM simtrail.changes WHERE tenant_id = %s ORDER BY id",
        (tenant,),
    )
    for change in changes:
        rows = state[change["table_name"]]
        old_key = canon(change["old_pk"] or change["row_pk"])
        if change["operation"] != "INSERT":
            rows.pop(old_key, None)
        if change["operation"] in ("INSERT", "UPDATE") and change["moved"] != "out":
            rows[canon(change["row_pk"])] = change["new_data"]
    return state


TenantStates = dict[str | None, dict[str, dict[Key, dict[str, Any]]]]


def live_tenant_states(db: Database) -> TenantStates:
    """The live rows of every tenant, found through each table's tenant path
    over the live parents: {tenant: {table: {key: image}}}. Rows of no tenant
    are under None."""
    states: TenantStates = {}
    tables = captured_tables(db)
    with psycopg.connect(db.dsn, autocommit=True, row_factory=dict_row) as conn:
        for name, table in tables.items():
            row = conn.execute(
                "SELECT simtrail.render_tenant_lookup(%s, 'r') AS l", (json.dumps(table.path),)
            ).fetchone()
            assert row is not None
            lookup = row["l"]
            # Every fragment is rendered from the catalog and the config.
            query = (
                f"SELECT {lookup['tenant']} AS tenant, to_jsonb(r) AS img"
                f" FROM {name} AS r{lookup['joins']}"
            )
            for r in conn.execute(query.encode()):
                states.setdefault(r["tenant"], {n: {} for n in tables})[name][
                    table.key(r["img"])
                ] = r["img"]
    return states
