"""Random tenant graphs for the clone and copy property tests.

One fixed schema holds every shape a copy must remap; what varies per example
is the data (which rows exist, who points at whom, cycles included), which
declared references exist and which expression generates the unique code.

    g_root   own tenant_id; parent_id: self-reference (SET NULL, cycles);
             owner_id: an untracked user (kept); code: unique across
             tenants (rule sql:); status: rule default; printed: rule null
    g_child  no tenant column, tenant via root_id (CASCADE); prev_id:
             self-reference (SET NULL, cycles, itself)
    g_grand  bigint identity key, tenant via child_id (CASCADE, 2 deep)
    g_link   composite primary key of two references to g_child (CASCADE)
    g_note   own tenant_id; a composite FK to g_link; declared references
             without FK: text to g_root.id, text to g_root.code (the ruled
             unique column), uuid to g_child.id, text to g_grand.id (bigint)

Rows point at rows of their own tenant, at users, and rarely ("foreign") at
rows of another tenant or of none, which a copy keeps. Indices pick rows by
position, modulo the rows of the right tenant, so hypothesis shrinks a
failure to a few readable rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import strategies as st
from psycopg import sql

from simtrail.clinic import seed
from simtrail.db import connect
from simtrail.triggers import installer
from tests.conftest import Database, Server

Conn = psycopg.Connection[Any]

SCHEMA = Path(__file__).parent / "sql" / "graph_schema.sql"

A, B, C, D = (f"{c}0000000-0000-4000-8000-000000000000" for c in "abcd")
USERS = [f"e0000000-0000-4000-8000-00000000000{i}" for i in range(3)]
TENANTS = [A, B, None]  # what a drawn tenant index means (None: no tenant)


def uid(kind: int, i: int) -> str:
    return f"{kind:08x}-0000-4000-8000-{i:012x}"


def template(server: Server) -> Database:
    """A database with the clinic's untracked tables, the graph tables as the
    only config rows, and simtrail installed; built once per server (the
    server fixture drops it)."""
    name = server.templates.get("graph")
    if name is None:
        name = f"simtrail_tpl_graph_{os.getpid()}"
        with server.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(server.dsn_for(name), autocommit=True) as conn:
            seed.apply_schema(conn, with_config=False)
            conn.execute(SCHEMA.read_bytes())
        with connect(server.dsn_for(name), "test setup") as conn:
            installer.install(conn)
        server.templates["graph"] = name
    return Database(server, name, server.dsn_for(name))


@dataclass(frozen=True)
class Ref:
    """Columns of `table` holding the values of `ref_cols` of `ref_table`."""

    table: str
    cols: tuple[str, ...]
    ref_table: str
    ref_cols: tuple[str, ...]
    as_text: bool = False


FKS = [
    Ref("public.g_root", ("parent_id",), "public.g_root", ("id",)),
    Ref("public.g_child", ("root_id",), "public.g_root", ("id",)),
    Ref("public.g_child", ("prev_id",), "public.g_child", ("id",)),
    Ref("public.g_grand", ("child_id",), "public.g_child", ("id",)),
    Ref("public.g_link", ("a_id",), "public.g_child", ("id",)),
    Ref("public.g_link", ("b_id",), "public.g_child", ("id",)),
    Ref("public.g_note", ("link_a", "link_b"), "public.g_link", ("a_id", "b_id")),
]
# Foreign keys to the untracked users: never remapped, always checked.
USER_FKS = [
    Ref("public.g_root", ("owner_id",), "public.user_profiles", ("id",)),
    Ref("public.g_note", ("by_user",), "public.user_profiles", ("id",)),
]
DECLARABLE = {
    "about": Ref("public.g_note", ("about",), "public.g_root", ("id",), as_text=True),
    "about_code": Ref("public.g_note", ("about_code",), "public.g_root", ("code",)),
    "about_child": Ref("public.g_note", ("about_child",), "public.g_child", ("id",)),
    "about_grand": Ref("public.g_note", ("about_grand",), "public.g_grand", ("id",), True),
}
PK = {
    "public.g_root": ("id",),
    "public.g_child": ("id",),
    "public.g_grand": ("id",),
    "public.g_link": ("a_id", "b_id"),
    "public.g_note": ("id",),
}
TABLES = list(PK)
# How each table reaches its tenant: its own column, or a reference to a parent.
TENANT_VIA: dict[str, str | Ref] = {
    "public.g_root": "tenant_id",
    "public.g_child": FKS[1],
    "public.g_grand": FKS[3],
    "public.g_link": FKS[4],
    "public.g_note": "tenant_id",
}
# Copy rules as stored in simtrail.copy_rules: (table, column) -> (rule, expression).
CODE_RULES = [
    "'K' || md5(random()::text)",
    "s.code || '-' || substr(md5(random()::text), 1, 8)",
    "upper(code) || '/' || floor(random() * 1e9)::bigint::text",
]
DEFAULTS = {("public.g_root", "status"): "new"}


@dataclass
class Graph:
    roots: list[tuple[int, int | None, int, int]]  # tenant, parent, owner, flavour
    children: list[tuple[int, int | None, int, bool]]  # root, prev, val, foreign prev
    grands: list[tuple[int, int]]  # child, n
    links: list[tuple[int, int, int, bool]]  # a, b, weight, foreign b
    notes: list[tuple[int, tuple[int | None, ...], int, bool]]  # tenant, targets, user, foreign
    declared: frozenset[str]
    code_rule: str
    # Values of declared-reference columns that name no row (some are not
    # even keys of the referenced type): (note position, column, value).
    dangling: list[tuple[int, tuple[str, str]]] = field(default_factory=list)

    @property
    def refs(self) -> list[Ref]:
        return FKS + [DECLARABLE[name] for name in sorted(self.declared)]

    @property
    def rules(self) -> dict[tuple[str, str], tuple[str, str | None]]:
        return {
            ("public.g_root", "code"): ("sql", self.code_rule),
            ("public.g_root", "status"): ("default", None),
            ("public.g_root", "printed"): ("null", None),
        }


small = st.integers(0, 40)
maybe = st.none() | small
tenant_index = st.sampled_from([0, 0, 0, 1, 1, 2])
rarely = st.integers(0, 5).map(lambda n: n == 5)
OTHER = {0: 1, 1: 2, 2: 0}  # the tenant a foreign reference picks from: A->B->none->A

GARBAGE = [
    ("about", uid(9, 1)), ("about", "not-a-uuid"), ("about", ""), ("about_code", "no-such"),
    ("about_child", uid(9, 2)), ("about_grand", "999999"), ("about_grand", "x1"),
]  # fmt: skip

graphs = st.builds(
    Graph,
    # The first root is the source's, so a subtree copy always has a root.
    roots=st.lists(
        st.tuples(tenant_index, maybe, st.integers(0, 3), small), min_size=1, max_size=8
    ).map(lambda rs: [(0, *rs[0][1:]), *rs[1:]]),
    children=st.lists(st.tuples(small, maybe, small, rarely), max_size=12),
    grands=st.lists(st.tuples(small, small), max_size=8),
    links=st.lists(st.tuples(small, small, small, rarely), max_size=8),
    notes=st.lists(
        st.tuples(
            tenant_index, st.tuples(maybe, maybe, maybe, maybe, maybe), st.integers(0, 3), rarely
        ),
        max_size=8,
    ),
    declared=st.frozensets(st.sampled_from(sorted(DECLARABLE))),
    code_rule=st.sampled_from(CODE_RULES),
    dangling=st.lists(st.tuples(small, st.sampled_from(GARBAGE)), max_size=2),
)


@dataclass
class Loaded:
    """Which tenant (index into TENANTS) each inserted row belongs to."""

    roots: list[tuple[str, int]] = field(default_factory=list)
    children: list[tuple[str, int]] = field(default_factory=list)
    grands: list[tuple[int, int]] = field(default_factory=list)
    links: list[tuple[tuple[str, str], int]] = field(default_factory=list)

    def of(self, rows: list[Any], tenant: int, index: int | None) -> Any:
        """The index-th key among rows of the tenant, or None."""
        mine = [key for key, t in rows if t == tenant]
        if index is None or not mine:
            return None
        return mine[index % len(mine)]


def configure(conn: Conn, graph: Graph) -> None:
    """Declared references and copy rules, written as the owner would."""
    for ref in graph.refs[len(FKS) :]:
        conn.execute(
            "INSERT INTO simtrail.refs (table_name, column_name, ref_table, ref_column)"
            " VALUES (%s, %s, %s, %s)",
            (ref.table, ref.cols[0], ref.ref_table, ref.ref_cols[0]),
        )
    for (table, column), (rule, expression) in graph.rules.items():
        conn.execute(
            "INSERT INTO simtrail.copy_rules (table_name, column_name, rule, expression)"
            " VALUES (%s, %s, %s, %s)",
            (table, column, rule, expression),
        )


def load(conn: Conn, graph: Graph) -> Loaded:
    """Insert the graph's rows (one transaction), self-references last."""
    done = Loaded()
    with conn.transaction():
        for i, (t, _, owner, flavour) in enumerate(graph.roots):
            key = uid(1, i)
            conn.execute(
                "INSERT INTO public.g_root (id, tenant_id, owner_id, label, code, status,"
                " printed, score, meta) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    key, TENANTS[t], USERS[owner] if owner < 3 else None, f"root {i}",
                    f"code-{i}", ["new", "open", "done"][flavour % 3],
                    [True, False, None][flavour % 3], flavour / 4 if flavour % 2 else None,
                    json.dumps({"i": i, "tags": [flavour]}),
                ),
            )  # fmt: skip
            done.roots.append((key, t))
        for i, (_, parent, _, _) in enumerate(graph.roots):
            target = done.of(done.roots, done.roots[i][1], parent)
            conn.execute(
                "UPDATE public.g_root SET parent_id = %s WHERE id = %s", (target, uid(1, i))
            )
        if done.roots:
            for i, (pos, _, val, _) in enumerate(graph.children):
                key, (owner_root, t) = uid(2, i), done.roots[pos % len(done.roots)]
                conn.execute(
                    "INSERT INTO public.g_child (id, root_id, val, tags, doc)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (key, owner_root, val if val % 5 else None, [f"t{val % 3}"] * (val % 3),
                     json.dumps({"v": val}) if val % 2 else None),
                )  # fmt: skip
                done.children.append((key, t))
            for i, (_, prev, _, foreign) in enumerate(graph.children):
                t = done.children[i][1]
                target = done.of(done.children, OTHER[t] if foreign else t, prev)
                conn.execute(
                    "UPDATE public.g_child SET prev_id = %s WHERE id = %s", (target, uid(2, i))
                )
        if done.children:
            for child_pos, n in graph.grands:
                key, t = done.children[child_pos % len(done.children)]
                row = conn.execute(
                    "INSERT INTO public.g_grand (child_id, note) VALUES (%s, %s) RETURNING id",
                    (key, f"g{n}" if n % 3 else None),
                ).fetchone()
                assert row is not None
                done.grands.append((int(row[0]), t))
            for a, b, weight, foreign in graph.links:
                first, t = done.children[a % len(done.children)]
                second = done.of(done.children, OTHER[t] if foreign else t, b) or first
                if conn.execute(
                    "INSERT INTO public.g_link (a_id, b_id, weight) VALUES (%s, %s, %s)"
                    " ON CONFLICT DO NOTHING RETURNING 1",
                    (first, second, weight),
                ).fetchone():
                    done.links.append(((first, second), t))
        for i, (t, (root, code, child, grand, link), user, foreign) in enumerate(graph.notes):
            of = OTHER[t] if foreign else t
            about = done.of(done.roots, of, root)
            coded = done.of(done.roots, of, code)
            linked = done.of(done.links, of, link) or (None, None)
            grand_id = done.of(done.grands, of, grand)
            conn.execute(
                "INSERT INTO public.g_note (id, tenant_id, about, about_code, about_child,"
                " about_grand, link_a, link_b, by_user, body)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    uid(5, i), TENANTS[t], about,
                    None if coded is None else f"code-{int(coded[-12:], 16)}",
                    done.of(done.children, of, child),
                    None if grand_id is None else str(grand_id), *linked,
                    USERS[user] if user < 3 else None, f"note {i}",
                ),
            )  # fmt: skip
        for position, (column, value) in graph.dangling if graph.notes else []:
            conn.execute(
                sql.SQL("UPDATE public.g_note SET {} = %s WHERE id = %s").format(
                    sql.Identifier(column)
                ),
                (value, uid(5, position % len(graph.notes))),
            )
    return done


Rows = dict[str, dict[str, dict[str, Any]]]  # table -> canonical key -> row


def key_of(table: str, row: dict[str, Any]) -> str:
    return json.dumps({c: row[c] for c in PK[table]}, sort_keys=True)


def read(conn: Conn) -> Rows:
    """Every row of every graph table, and the untracked ones, as to_jsonb."""
    rows: Rows = {}
    for table in [*TABLES, "public.user_profiles", "public.tenants"]:
        images = conn.execute(f"SELECT to_jsonb(t) FROM {table} AS t").fetchall()
        keyed = PK.get(table, ("id",))
        rows[table] = {
            json.dumps({c: img[c] for c in keyed}, sort_keys=True): img for (img,) in images
        }
    return rows


def tenant_of(rows: Rows, table: str, row: dict[str, Any]) -> str | None:
    """The tenant a row reaches through its path, or None."""
    via = TENANT_VIA[table]
    while not isinstance(via, str):
        parent = next(
            (p for p in rows[via.ref_table].values() if p[via.ref_cols[0]] == row[via.cols[0]]),
            None,
        )
        if parent is None:
            return None
        table, row, via = via.ref_table, parent, TENANT_VIA[via.ref_table]
    value = row[via]
    return None if value is None else str(value)


def of_tenant(rows: Rows, tenant: str) -> Rows:
    return {
        table: {k: r for k, r in rows[table].items() if tenant_of(rows, table, r) == tenant}
        for table in TABLES
    }


def outside(rows: Rows, tenant: str) -> Rows:
    """Every row not of the tenant (other tenants', no tenant's, untracked)."""
    mine = of_tenant(rows, tenant)
    return {
        table: {k: r for k, r in images.items() if k not in mine.get(table, {})}
        for table, images in rows.items()
    }
