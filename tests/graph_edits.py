"""Random edits to one tenant's rows of the graph schema (tests/graphs.py).

An edit is (kind, a, b): `a` and `b` pick the tenant's rows by position in
key order. Every kind is plain SQL as an application would write it; the
cascades and SET NULLs come from the schema. Key changes of the composite
key are among them. Nothing moves a row to another tenant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from tests.graphs import Conn

OF_TENANT = {
    "root": "SELECT r.id FROM public.g_root AS r WHERE r.tenant_id = %s ORDER BY 1",
    "child": "SELECT c.id FROM public.g_child AS c JOIN public.g_root AS r ON r.id = c.root_id"
    " WHERE r.tenant_id = %s ORDER BY 1",
    "grand": "SELECT g.id FROM public.g_grand AS g JOIN public.g_child AS c ON c.id = g.child_id"
    " JOIN public.g_root AS r ON r.id = c.root_id WHERE r.tenant_id = %s ORDER BY 1",
    "link": "SELECT l.a_id, l.b_id FROM public.g_link AS l JOIN public.g_child AS c"
    " ON c.id = l.a_id JOIN public.g_root AS r ON r.id = c.root_id WHERE r.tenant_id = %s"
    " ORDER BY 1, 2",
    "note": "SELECT n.id FROM public.g_note AS n WHERE n.tenant_id = %s ORDER BY 1",
}

Edit = tuple[str, int, int]


def pick(conn: Conn, what: str, tenant: str, index: int) -> Any:
    """The index-th (modulo) row key of the tenant, a tuple for links; or None."""
    rows = conn.execute(OF_TENANT[what].encode(), (tenant,)).fetchall()
    if not rows:
        return None
    row = rows[index % len(rows)]
    return tuple(row) if what == "link" else row[0]


def _update_root(conn: Conn, t: str, a: int, b: int) -> None:
    conn.execute(
        "UPDATE public.g_root SET label = label || '*', score = %s, status = 'edited',"
        " printed = NOT coalesce(printed, false), meta = meta || %s::jsonb,"
        " owner_id = (SELECT u.id FROM public.user_profiles AS u ORDER BY 1 OFFSET %s LIMIT 1)"
        " WHERE id = %s",
        (b, f'{{"e": {b}}}', b % 3, pick(conn, "root", t, a)),
    )


def _recode_root(conn: Conn, t: str, a: int, b: int) -> None:
    conn.execute(
        "UPDATE public.g_root AS r SET code = r.code || %(s)s WHERE r.id = %(id)s"
        " AND NOT EXISTS (SELECT 1 FROM public.g_root AS o WHERE o.code = r.code || %(s)s)",
        {"s": f"~{b}", "id": pick(conn, "root", t, a)},
    )


def _reparent_root(conn: Conn, t: str, a: int, b: int) -> None:
    parent = pick(conn, "root", t, b) if b % 4 else None
    conn.execute(
        "UPDATE public.g_root SET parent_id = %s WHERE id = %s", (parent, pick(conn, "root", t, a))
    )


def _delete_root(conn: Conn, t: str, a: int, b: int) -> None:
    conn.execute("DELETE FROM public.g_root WHERE id = %s", (pick(conn, "root", t, a),))


def _add_root(conn: Conn, t: str, a: int, b: int) -> None:
    conn.execute(
        "INSERT INTO public.g_root (tenant_id, parent_id, label, code)"
        " VALUES (%s, %s, 'added', %s) ON CONFLICT DO NOTHING",
        (t, pick(conn, "root", t, a), f"new-{t[:1]}-{a}-{b}"),
    )


def _add_child(conn: Conn, t: str, a: int, b: int) -> None:
    root = pick(conn, "root", t, a)
    if root is not None:
        conn.execute(
            "INSERT INTO public.g_child (root_id, prev_id, val, tags) VALUES (%s, %s, %s, '{x}')",
            (root, pick(conn, "child", t, b), b),
        )


def _edit_child(conn: Conn, t: str, a: int, b: int) -> None:
    conn.execute(
        "UPDATE public.g_child SET val = %s, tags = tags || 'e'::text, prev_id = %s,"
        " doc = '{\"edited\": true}' WHERE id = %s",
        (b, pick(conn, "child", t, b) if b % 3 else None, pick(conn, "child", t, a)),
    )


def _delete_child(conn: Conn, t: str, a: int, b: int) -> None:
    conn.execute("DELETE FROM public.g_child WHERE id = %s", (pick(conn, "child", t, a),))


def _add_grand(conn: Conn, t: str, a: int, b: int) -> None:
    child = pick(conn, "child", t, a)
    if child is not None:
        conn.execute(
            "INSERT INTO public.g_grand (child_id, note) VALUES (%s, %s)", (child, f"added {b}")
        )


def _edit_grand(conn: Conn, t: str, a: int, b: int) -> None:
    conn.execute(
        "UPDATE public.g_grand SET note = %s, child_id = coalesce(%s, child_id) WHERE id = %s",
        (f"edited {b}", pick(conn, "child", t, b), pick(conn, "grand", t, a)),
    )


def _delete_grand(conn: Conn, t: str, a: int, b: int) -> None:
    conn.execute("DELETE FROM public.g_grand WHERE id = %s", (pick(conn, "grand", t, a),))


def _add_link(conn: Conn, t: str, a: int, b: int) -> None:
    first, second = pick(conn, "child", t, a), pick(conn, "child", t, b)
    if first is not None:
        conn.execute(
            "INSERT INTO public.g_link (a_id, b_id, weight) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (first, second, b),
        )


def _rekey_link(conn: Conn, t: str, a: int, b: int) -> None:
    """A change of the composite key, unless a note points at the link."""
    link = pick(conn, "link", t, a)
    if link is not None:
        conn.execute(
            "UPDATE public.g_link AS l SET b_id = %(b)s, weight = weight + 1"
            " WHERE (l.a_id, l.b_id) = (%(a_id)s, %(b_id)s)"
            " AND NOT EXISTS (SELECT 1 FROM public.g_link AS o"
            "                 WHERE (o.a_id, o.b_id) = (l.a_id, %(b)s))"
            " AND NOT EXISTS (SELECT 1 FROM public.g_note AS n"
            "                 WHERE (n.link_a, n.link_b) = (l.a_id, l.b_id))",
            {"b": pick(conn, "child", t, b), "a_id": link[0], "b_id": link[1]},
        )


def _delete_link(conn: Conn, t: str, a: int, b: int) -> None:
    link = pick(conn, "link", t, a)
    if link is not None:
        conn.execute("DELETE FROM public.g_link WHERE (a_id, b_id) = (%s, %s)", link)


def _add_note(conn: Conn, t: str, a: int, b: int) -> None:
    link = pick(conn, "link", t, b) or (None, None)
    root, grand = pick(conn, "root", t, a), pick(conn, "grand", t, a)
    conn.execute(
        "INSERT INTO public.g_note (tenant_id, about, about_code, about_child, about_grand,"
        " link_a, link_b, body) SELECT %s, %s, (SELECT code FROM public.g_root WHERE id = %s),"
        " %s, %s, %s, %s, 'added'",
        (t, root, root, pick(conn, "child", t, b), None if grand is None else str(grand), *link),
    )


def _edit_note(conn: Conn, t: str, a: int, b: int) -> None:
    conn.execute(
        "UPDATE public.g_note SET body = body || '!', about = %s,"
        " by_user = (SELECT u.id FROM public.user_profiles AS u ORDER BY 1 OFFSET %s LIMIT 1)"
        " WHERE id = %s",
        (pick(conn, "root", t, b), b % 3, pick(conn, "note", t, a)),
    )


def _delete_note(conn: Conn, t: str, a: int, b: int) -> None:
    conn.execute("DELETE FROM public.g_note WHERE id = %s", (pick(conn, "note", t, a),))


EDITS: dict[str, Callable[[Conn, str, int, int], None]] = {
    fn.__name__[1:]: fn
    for fn in [
        _update_root, _recode_root, _reparent_root, _delete_root, _add_root, _add_child,
        _edit_child, _delete_child, _add_grand, _edit_grand, _delete_grand, _add_link,
        _rekey_link, _delete_link, _add_note, _edit_note, _delete_note,
    ]
}  # fmt: skip

edits = st.lists(
    st.tuples(st.sampled_from(sorted(EDITS)), st.integers(0, 40), st.integers(0, 40)),
    max_size=8,
)


def apply(conn: Conn, tenant: str, ops: list[Edit]) -> None:
    """Each edit in its own transaction, as students' clicks would be."""
    for kind, a, b in ops:
        with conn.transaction():
            EDITS[kind](conn, tenant, a, b)
