"""Random histories of writes on the clinic schema, for property tests.

An operation is (kind, a, b): `a` and `b` are small integers that pick rows
and tenants by position, so hypothesis can shrink a failing history to a few
readable steps. Every kind runs plain SQL, as an application would; cascades,
SET NULLs and key changes come from the schema itself. Patients move between
classes and to and from no class at all, with the children that reach their
tenant through them. References without a foreign key (scans, wound
treatments) are left dangling when what they point at goes.

Wristbands are random (md5 of random()): unique across tenants as the column
wants, and no pick depends on them, so a history still replays exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
from hypothesis import strategies as st

Conn = psycopg.Connection[Any]
Op = tuple[str, int, int]


def pick(conn: Conn, query: str, index: int, params: Any = None) -> Any:
    """The index-th row (modulo the count) of a query ordered by its first column."""
    rows = conn.execute(query.encode(), params).fetchall()
    if not rows:
        return None
    return rows[index % len(rows)][0]


def tenant(conn: Conn, index: int) -> Any:
    return pick(conn, "SELECT id FROM public.tenants ORDER BY id", index)


def patient(conn: Conn, index: int) -> Any:
    return pick(conn, "SELECT id FROM public.patients ORDER BY id", index)


def _add_patient(conn: Conn, a: int, b: int) -> None:
    conn.execute(
        "INSERT INTO public.patients (tenant_id, patient_id, first_name, last_name,"
        " date_of_birth, allergies, acuity, admission_details, wristband)"
        " VALUES (%s, %s, 'Pat', %s, '1950-01-01', %s, 'guarded', %s, " + WRISTBAND + ")"
        " ON CONFLICT (tenant_id, patient_id) DO NOTHING",
        (
            tenant(conn, a),
            f"MRN-H{b % 7}",
            f"Case{b}",
            ["latex"] if b % 2 else [],
            json.dumps({"bed": b}),
        ),
    )


WRISTBAND = "'P' || left(md5(random()::text), 12)"


def _readmit(conn: Conn, a: int, b: int) -> None:
    """Discharge a patient and admit a new one under the same MRN, same class."""
    row = conn.execute(
        "DELETE FROM public.patients WHERE id = %s RETURNING tenant_id, patient_id",
        (patient(conn, a),),
    ).fetchone()
    if row:
        conn.execute(
            "INSERT INTO public.patients (tenant_id, patient_id, first_name, last_name,"
            " date_of_birth, wristband) VALUES (%s, %s, 'Re', 'Admitted', '1960-02-02', "
            + WRISTBAND
            + ")",
            row,
        )


def _update_patient(conn: Conn, a: int, b: int) -> None:
    conn.execute(
        "UPDATE public.patients SET acuity = (enum_range(NULL::public.acuity_level))[%s],"
        " allergies = allergies || %s::text, admission_details = admission_details || %s"
        " WHERE id = %s",
        (1 + b % 4, f"a{b}", json.dumps({"note": b}), patient(conn, a)),
    )


def _move_patient(conn: Conn, a: int, b: int) -> None:
    conn.execute(
        "UPDATE public.patients AS p SET tenant_id = %(t)s WHERE p.id = %(p)s"
        " AND NOT EXISTS (SELECT 1 FROM public.patients AS q"
        "                 WHERE q.tenant_id = %(t)s AND q.patient_id = p.patient_id)",
        {"t": tenant(conn, b), "p": patient(conn, a)},
    )


def _add_loose_patient(conn: Conn, a: int, b: int) -> None:
    """A patient of no class yet, with children that reach their tenant only
    through it: when it moves, they move with it."""
    row = conn.execute(
        "INSERT INTO public.patients (tenant_id, patient_id, first_name, last_name,"
        " date_of_birth) VALUES (NULL, %s, 'Lou', %s, '1970-03-03') RETURNING id",
        (f"MRN-L{b % 5}", f"Loose{a}"),
    ).fetchone()
    assert row is not None
    conn.execute(
        "INSERT INTO public.handover_notes (patient_id, shift, sbar) VALUES (%s, 'day', %s)",
        (row[0], json.dumps({"s": f"loose {a}"})),
    )
    _add_wound_to(conn, row[0], b)


def _assign_patient(conn: Conn, a: int, b: int) -> None:
    """A patient of no class joins one (from no tenant)."""
    conn.execute(
        "UPDATE public.patients AS p SET tenant_id = %(t)s WHERE p.id = %(p)s"
        " AND NOT EXISTS (SELECT 1 FROM public.patients AS q"
        "                 WHERE q.tenant_id = %(t)s AND q.patient_id = p.patient_id)",
        {
            "t": tenant(conn, b),
            "p": pick(
                conn, "SELECT id FROM public.patients WHERE tenant_id IS NULL ORDER BY id", a
            ),
        },
    )


def _unassign_patient(conn: Conn, a: int, b: int) -> None:
    """A patient leaves its class for no tenant, children and all."""
    conn.execute("UPDATE public.patients SET tenant_id = NULL WHERE id = %s", (patient(conn, a),))


def _delete_patient(conn: Conn, a: int, b: int) -> None:
    conn.execute("DELETE FROM public.patients WHERE id = %s", (patient(conn, a),))


def _add_vitals(conn: Conn, a: int, b: int) -> None:
    conn.execute(
        "INSERT INTO public.patient_vitals (tenant_id, patient_id, temperature, heart_rate)"
        " SELECT tenant_id, id, 36.5 + %s / 10.0, 60 + %s FROM public.patients WHERE id = %s",
        (b % 30, b, patient(conn, a)),
    )


def _add_handover(conn: Conn, a: int, b: int) -> None:
    conn.execute(
        "INSERT INTO public.handover_notes (patient_id, shift, sbar)"
        " SELECT id, 'day', %s FROM public.patients WHERE id = %s",
        (json.dumps({"s": f"sit {b}", "r": [b, b + 1]}), patient(conn, a)),
    )


def _add_wound(conn: Conn, a: int, b: int) -> None:
    _add_wound_to(conn, patient(conn, a), b)


def _add_wound_to(conn: Conn, patient_id: Any, b: int) -> None:
    wound = conn.execute(
        "INSERT INTO public.patient_wounds (patient_id, location, wound_type)"
        " SELECT id, 'heel', 'pressure' FROM public.patients WHERE id = %s RETURNING id",
        (patient_id,),
    ).fetchone()
    if wound:
        conn.execute(
            "INSERT INTO public.wound_assessments (wound_id, length_cm, photos)"
            " VALUES (%s, %s, '[]'), (%s, %s, '[\"p.jpg\"]')",
            (wound[0], b % 9, wound[0], b % 7),
        )


def _add_panel(conn: Conn, a: int, b: int) -> None:
    panel = conn.execute(
        "INSERT INTO public.lab_panels (tenant_id, patient_id, panel_name)"
        " SELECT tenant_id, id, 'CBC' FROM public.patients WHERE id = %s RETURNING id",
        (patient(conn, a),),
    ).fetchone()
    if panel:
        conn.execute(
            "INSERT INTO public.lab_results (panel_id, test_name, value, flag)"
            " VALUES (%s, 'WBC', %s, 'N'), (%s, 'Hgb', %s, 'L')",
            (panel[0], b, panel[0], b / 3),
        )


def _edit_children(conn: Conn, a: int, b: int) -> None:
    conn.execute(
        "UPDATE public.wound_assessments SET depth_cm = %s WHERE wound_id IN"
        " (SELECT id FROM public.patient_wounds WHERE patient_id = %s)",
        (b % 5, patient(conn, a)),
    )
    conn.execute(
        "UPDATE public.lab_results SET value = value + 1 WHERE panel_id IN"
        " (SELECT id FROM public.lab_panels WHERE patient_id = %s)",
        (patient(conn, a),),
    )


def _delete_children(conn: Conn, a: int, b: int) -> None:
    kind = b % 4
    if kind == 0:
        conn.execute(
            "DELETE FROM public.patient_wounds WHERE id = %s",
            (pick(conn, "SELECT id FROM public.patient_wounds ORDER BY id", a),),
        )
    elif kind == 1:
        conn.execute(
            "DELETE FROM public.lab_panels WHERE id = %s",
            (pick(conn, "SELECT id FROM public.lab_panels ORDER BY id", a),),
        )
    elif kind == 2:
        conn.execute(
            "DELETE FROM public.handover_notes WHERE id = %s",
            (pick(conn, "SELECT id FROM public.handover_notes ORDER BY id", a),),
        )
    else:
        conn.execute(
            "DELETE FROM public.patient_vitals WHERE id = %s",
            (pick(conn, "SELECT id FROM public.patient_vitals ORDER BY id", a),),
        )


def _care_team_key_change(conn: Conn, a: int, b: int) -> None:
    member = pick(
        conn, "SELECT (patient_id, user_id)::text FROM public.patient_care_team ORDER BY 1", a
    )
    if member is None:
        return
    conn.execute(
        "UPDATE public.patient_care_team SET user_id = u.id FROM ("
        "  SELECT id FROM public.user_profiles ORDER BY id OFFSET %s LIMIT 1) AS u"
        " WHERE (patient_care_team.patient_id, patient_care_team.user_id)::text = %s"
        "   AND NOT EXISTS (SELECT 1 FROM public.patient_care_team c"
        "                   WHERE c.patient_id = patient_care_team.patient_id"
        "                     AND c.user_id = u.id)",
        (b % 5, member),
    )


def _supersede_order(conn: Conn, a: int, b: int) -> None:
    conn.execute(
        "INSERT INTO public.doctors_orders (tenant_id, patient_id, order_type, order_text,"
        " supersedes_id) SELECT o.tenant_id, o.patient_id, o.order_type, o.order_text || ' rev',"
        " o.id FROM public.doctors_orders o WHERE o.id = %s",
        (pick(conn, "SELECT id FROM public.doctors_orders ORDER BY id", a),),
    )
    conn.execute(
        "DELETE FROM public.doctors_orders WHERE id = %s",
        (pick(conn, "SELECT id FROM public.doctors_orders ORDER BY id", b),),
    )


def _medications(conn: Conn, a: int, b: int) -> None:
    """Prescribe a drug, give one (its label printed, a scan storing both ids
    as text), or stop one: its administrations and order links cascade, its
    scans stay."""
    kind = b % 3
    if kind == 0:
        conn.execute(
            "INSERT INTO public.patient_medications (tenant_id, patient_id, name, dosage, route,"
            " frequency) SELECT tenant_id, id, %s, '1 tab', 'PO', 'Daily'"
            " FROM public.patients WHERE id = %s",
            (f"Drug {b}", patient(conn, a)),
        )
        return
    medication = pick(conn, "SELECT id FROM public.patient_medications ORDER BY id", a)
    if kind == 1:
        conn.execute(
            "UPDATE public.patient_medications SET label_printed = true,"
            " last_administered = now() WHERE id = %s",
            (medication,),
        )
        conn.execute(
            "INSERT INTO public.medication_scans (tenant_id, patient_id, medication_id, barcode)"
            " SELECT tenant_id, patient_id::text, id::text, 'MED-' || left(id::text, 8)"
            " FROM public.patient_medications WHERE id = %s",
            (medication,),
        )
    else:
        conn.execute("DELETE FROM public.patient_medications WHERE id = %s", (medication,))


def _order_links(conn: Conn, a: int, b: int) -> None:
    """Link an order to a medication of its patient and class, or move a link
    to another such order (a change of a key made of two references)."""
    order = pick(conn, "SELECT id FROM public.doctors_orders ORDER BY id", a)
    if b % 2 == 0:
        conn.execute(
            "INSERT INTO public.order_medications (order_id, medication_id, tenant_id)"
            " SELECT o.id, m.id, o.tenant_id FROM public.doctors_orders AS o"
            " JOIN public.patient_medications AS m ON m.patient_id = o.patient_id"
            "  AND m.tenant_id IS NOT DISTINCT FROM o.tenant_id"
            " WHERE o.id = %s ORDER BY m.id OFFSET %s LIMIT 1"
            " ON CONFLICT DO NOTHING",
            (order, b // 2 % 4),
        )
        return
    rows = conn.execute(
        "SELECT order_id, medication_id FROM public.order_medications ORDER BY 1, 2"
    ).fetchall()
    if not rows:
        return
    old_order, medication = rows[a % len(rows)]
    new_order = pick(
        conn,
        "SELECT o.id FROM public.doctors_orders AS o JOIN public.doctors_orders AS c"
        " ON c.id = %s AND o.patient_id = c.patient_id AND o.id <> c.id"
        "  AND o.tenant_id IS NOT DISTINCT FROM c.tenant_id"
        " WHERE NOT EXISTS (SELECT 1 FROM public.order_medications AS x"
        "                  WHERE x.order_id = o.id AND x.medication_id = %s)"
        " ORDER BY o.id",
        b,
        (old_order, medication),
    )
    if new_order is not None:
        conn.execute(
            "UPDATE public.order_medications SET order_id = %s"
            " WHERE order_id = %s AND medication_id = %s",
            (new_order, old_order, medication),
        )


def _treat_wound(conn: Conn, a: int, b: int) -> None:
    """A treatment names its assessment by a uuid with no foreign key, and
    carries the class of the patient (or none)."""
    conn.execute(
        "INSERT INTO public.wound_treatments (tenant_id, wound_assessment_id, treatment,"
        " applied_at) SELECT p.tenant_id, a.id, %s, now() FROM public.wound_assessments AS a"
        " JOIN public.patient_wounds AS w ON w.id = a.wound_id"
        " JOIN public.patients AS p ON p.id = w.patient_id WHERE a.id = %s",
        (f"dressing {b}", pick(conn, "SELECT id FROM public.wound_assessments ORDER BY id", a)),
    )


def _delete_user(conn: Conn, a: int, b: int) -> None:
    conn.execute(
        "DELETE FROM public.user_profiles WHERE id = %s",
        (pick(conn, "SELECT id FROM public.user_profiles ORDER BY id", a),),
    )


def _truncate_results(conn: Conn, a: int, b: int) -> None:
    conn.execute("TRUNCATE public.lab_results")


def _mrn_records(conn: Conn, a: int, b: int) -> None:
    conn.execute(
        "INSERT INTO public.diabetic_records (tenant_id, patient_id, glucose_mg_dl)"
        " SELECT tenant_id, patient_id, %s FROM public.patients WHERE id = %s",
        (80 + b, patient(conn, a)),
    )
    conn.execute(
        "INSERT INTO public.bowel_records (tenant_id, patient_id, stool_type)"
        " SELECT tenant_id, patient_id, %s FROM public.patients WHERE id = %s",
        (1 + b % 7, patient(conn, a)),
    )


OPERATIONS: dict[str, Callable[[Conn, int, int], None]] = {
    "add_patient": _add_patient,
    "readmit": _readmit,
    "update_patient": _update_patient,
    "move_patient": _move_patient,
    "add_loose_patient": _add_loose_patient,
    "assign_patient": _assign_patient,
    "unassign_patient": _unassign_patient,
    "delete_patient": _delete_patient,
    "add_vitals": _add_vitals,
    "add_handover": _add_handover,
    "add_wound": _add_wound,
    "add_panel": _add_panel,
    "edit_children": _edit_children,
    "delete_children": _delete_children,
    "care_team_key_change": _care_team_key_change,
    "supersede_order": _supersede_order,
    "medications": _medications,
    "order_links": _order_links,
    "treat_wound": _treat_wound,
    "delete_user": _delete_user,
    "truncate_results": _truncate_results,
    "mrn_records": _mrn_records,
}


def make_histories(
    exclude: frozenset[str] = frozenset(),
    rare: frozenset[str] = frozenset({"truncate_results", "delete_user"}),
) -> st.SearchStrategy[list[tuple[list[Op], bool]]]:
    """Histories of 1-6 transactions of 1-4 operations, some rolled back."""
    # Rare, sweeping operations are drawn less often so histories stay interesting.
    weighted = [
        kind for kind in OPERATIONS if kind not in exclude for _ in range(1 if kind in rare else 4)
    ]
    operations = st.tuples(st.sampled_from(weighted), st.integers(0, 40), st.integers(0, 40))
    transactions = st.tuples(st.lists(operations, min_size=1, max_size=4), st.booleans())
    return st.lists(transactions, min_size=1, max_size=6)


histories = make_histories()


def run_transaction(conn: Conn, ops: list[Op], commit: bool) -> None:
    with conn.transaction(force_rollback=not commit):
        for kind, a, b in ops:
            OPERATIONS[kind](conn, a, b)
