"""Install the clinic fixture and fill it with reproducible simulation data.

Every function takes a connection from the caller and leaves transaction
control to it: nothing here commits, so a test can roll everything back and a
demo can run on an autocommit connection.

All ids, names and (in :func:`seed_tenants`) timestamps come from the given
``random.Random``, so the same seed on an empty database yields the same rows.
The flip side: ids repeat with the seed, so thread one generator through all
calls against a database instead of re-creating ``Random(seed)`` per call.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.abc import Params
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

__all__ = ["apply_copy_config", "apply_schema", "seed_tenants", "student_session"]

# Seeded charting happens on a fixed morning, not "now", so it is reproducible.
_SEED_CLOCK = datetime(2025, 11, 3, 7, 0, tzinfo=UTC)

_COURSES = (
    ("NURS 210", "Med-Surg"),
    ("NURS 315", "Pediatrics"),
    ("NURS 320", "Maternal-Newborn"),
    ("NURS 410", "Critical Care"),
    ("NURS 330", "Mental Health"),
)
_FIRST_NAMES = (
    "Margaret",
    "Harold",
    "Aisha",
    "Diego",
    "Mei",
    "Oluwaseun",
    "Ruth",
    "Tomasz",
    "Priya",
    "Walter",
    "Leilani",
    "Jamal",
    "Ingrid",
    "Hiroshi",
    "Carmen",
    "Declan",
    "Fatima",
    "Eleanor",
    "Mateo",
    "Grace",
    "Nikolai",
    "Abena",
    "Samuel",
    "Yesenia",
)
_LAST_NAMES = (
    "Okafor",
    "Lindqvist",
    "Haddad",
    "Nguyen",
    "Castillo",
    "Brennan",
    "Kowalski",
    "Tanaka",
    "Patel",
    "Whitfield",
    "Mensah",
    "Delgado",
    "Fraser",
    "Ivanova",
    "Kahananui",
    "Moreau",
    "Abernathy",
    "Oyelaran",
    "Schultz",
    "Begay",
)
_DIAGNOSES = (
    "Community-acquired pneumonia",
    "Exacerbation of heart failure",
    "Type 2 diabetes with hyperglycemia",
    "COPD exacerbation",
    "Post-op day 1, right total hip arthroplasty",
    "Cellulitis, left lower extremity",
    "Acute pancreatitis",
    "Urosepsis",
    "Diabetic ketoacidosis, resolving",
    "Small bowel obstruction",
)
_ALLERGIES = (
    "Penicillin",
    "Sulfa drugs",
    "Latex",
    "Codeine",
    "Morphine",
    "Iodinated contrast",
    "Shellfish",
    "Vancomycin",
)
# name, dosage, route, frequency, scheduled times (empty for PRN)
_FORMULARY: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("Metoprolol tartrate", "25 mg", "PO", "BID", ("08:00", "20:00")),
    ("Furosemide", "40 mg", "IV push", "Daily", ("09:00",)),
    ("Enoxaparin", "40 mg", "SubQ", "Daily", ("21:00",)),
    ("Insulin lispro", "Sliding scale", "SubQ", "AC & HS", ("07:30", "11:30", "16:30", "21:00")),
    ("Acetaminophen", "650 mg", "PO", "Q6H PRN pain", ()),
    ("Ceftriaxone", "1 g", "IVPB", "Q24H", ("10:00",)),
    ("Pantoprazole", "40 mg", "PO", "Daily before breakfast", ("06:00",)),
    ("Morphine sulfate", "2 mg", "IV push", "Q4H PRN severe pain", ()),
    ("Lisinopril", "10 mg", "PO", "Daily", ("09:00",)),
    ("Ondansetron", "4 mg", "IV push", "Q8H PRN nausea", ()),
    ("Vancomycin", "1.25 g", "IVPB", "Q12H", ("06:00", "18:00")),
    ("Potassium chloride", "20 mEq", "PO", "BID", ("09:00", "17:00")),
)
# panel -> (test, units, reference low, reference high, decimals)
_PANELS: dict[str, tuple[tuple[str, str, float, float, int], ...]] = {
    "Basic metabolic panel": (
        ("Sodium", "mmol/L", 135, 145, 0),
        ("Potassium", "mmol/L", 3.5, 5.0, 1),
        ("Glucose", "mg/dL", 70, 99, 0),
        ("BUN", "mg/dL", 7, 20, 0),
        ("Creatinine", "mg/dL", 0.6, 1.3, 2),
    ),
    "Complete blood count": (
        ("WBC", "10^3/uL", 4.5, 11.0, 1),
        ("Hemoglobin", "g/dL", 12.0, 17.5, 1),
        ("Hematocrit", "%", 36, 52, 1),
        ("Platelets", "10^3/uL", 150, 400, 0),
    ),
}
_WOUNDS = (
    ("Sacrum", "Pressure injury", "Stage 2"),
    ("Right heel", "Pressure injury", "Deep tissue injury"),
    ("Left lower leg", "Venous ulcer", None),
    ("Midline abdomen", "Surgical incision", None),
    ("Left forearm", "Skin tear", None),
)
_DRAINAGE = ("None", "Serous, scant", "Serosanguineous, small", "Purulent, moderate")
_TREATMENTS = (
    "Cleansed with normal saline; foam dressing applied",
    "Hydrocolloid dressing changed",
    "Silver alginate packed; dry gauze cover",
    "Zinc barrier cream to periwound skin",
)
_ATTENDINGS = ("Dr. Achebe", "Dr. Sorensen", "Dr. Villanueva", "Dr. Kaur", "Dr. Feld")
_PROGRESS_NOTES = (
    "Patient resting comfortably. Denies pain. Call light within reach.",
    "Ambulated 50 ft in hallway with walker and standby assist; tolerated well.",
    "Reports pain 6/10 at incision site; PRN analgesic offered per order.",
    "Lung sounds diminished in bases bilaterally; encouraged incentive spirometer.",
    "Voiding without difficulty. Tolerating regular diet, 75% of breakfast eaten.",
    "Family at bedside, questions about discharge answered; teaching reinforced.",
)

# Parents before children; superseded orders before the orders that replace
# them. Tables without a foreign key to their parent still follow it, as an
# application would write them.
_INSERT_ORDER = (
    "user_profiles",
    "tenants",
    "patients",
    "patient_medications",
    "medication_administrations",
    "medication_scans",
    "patient_vitals",
    "patient_notes",
    "lab_panels",
    "lab_results",
    "doctors_orders",
    "order_medications",
    "handover_notes",
    "patient_wounds",
    "wound_assessments",
    "wound_treatments",
    "patient_care_team",
    "bowel_records",
    "diabetic_records",
)


def apply_schema(conn: psycopg.Connection[Any], *, with_config: bool = True) -> None:
    """Create the clinic schema (and, by default, its simulation_table_config rows).

    Meant for an empty database; the scripts are not idempotent.
    """
    package = files("simtrail.clinic")
    names = ("schema.sql", "config.sql") if with_config else ("schema.sql",)
    for name in names:
        # Bytes, not str: a script read from disk is not a literal query, and
        # without parameters psycopg sends it as one multi-statement batch.
        conn.execute(package.joinpath(name).read_bytes())


def apply_copy_config(conn: psycopg.Connection[Any]) -> None:
    """Declare the fixture's references without FK and its copy rules.

    Needs simtrail installed (schema v12 or later); not idempotent.
    """
    conn.execute(files("simtrail.clinic").joinpath("copy_config.sql").read_bytes())


def seed_tenants(
    conn: psycopg.Connection[Any],
    *,
    tenants: int = 3,
    patients_per_tenant: int = 8,
    rng: random.Random,
) -> list[uuid.UUID]:
    """Create staff, class-section tenants and fully charted patients.

    Returns the new tenant ids in creation order.
    """
    batch = _Batch()
    tenant_ids: list[uuid.UUID] = []
    wristbands: set[str] = set()
    for index in range(tenants):
        code, title = _COURSES[index % len(_COURSES)]
        section = chr(ord("A") + (index // len(_COURSES)) % 26)
        tenant_id = _uuid(rng)
        tenant_ids.append(tenant_id)
        batch.add("tenants", id=tenant_id, name=f"{code} \u2013 {title}, Section {section}")

        instructor = _person(batch, rng, "instructor")
        students = [_person(batch, rng, "student") for _ in range(4)]
        mrns = rng.sample(range(100000, 1000000), patients_per_tenant)
        for number, mrn in enumerate(sorted(mrns)):
            _seed_patient(
                batch,
                rng,
                tenant_id,
                f"MRN-{mrn}",
                wristband=_wristband(rng, wristbands),
                room=f"{3 + number // 10}{'AB'[number % 2]}-{10 + number:02d}",
                instructor=instructor,
                student=students[number % len(students)],
                backup=students[(number + 1) % len(students)],
            )
    batch.flush(conn)
    return tenant_ids


def student_session(
    conn: psycopg.Connection[Any], tenant_id: uuid.UUID, *, rng: random.Random
) -> dict[str, int]:
    """Simulate one class session of charting in a tenant.

    Covers every kind of change simtrail must capture: plain inserts, updates
    that fire the updated_at stampers, jsonb and enum edits, a primary-key
    change on a composite key, a superseding order, a patient deleted with all
    of its cascaded children, and a patient discharged and re-admitted under
    the same MRN. Returns how many of each action it performed.
    """
    counts = dict.fromkeys(
        (
            "vitals_inserted",
            "administrations_inserted",
            "notes_inserted",
            "notes_updated",
            "medications_status_changed",
            "medication_scans_inserted",
            "wound_assessments_updated",
            "wound_treatments_inserted",
            "orders_superseded",
            "care_team_reassigned",
            "bowel_records_inserted",
            "diabetic_records_inserted",
            "patients_deleted",
            "patients_readmitted",
        ),
        0,
    )
    patients = _fetch(
        conn,
        "SELECT id, patient_id FROM public.patients WHERE tenant_id = %s ORDER BY patient_id, id",
        [tenant_id],
    )
    if not patients:
        return counts
    students = [
        row[0]
        for row in _fetch(
            conn,
            "SELECT DISTINCT u.id FROM public.patient_care_team ct"
            " JOIN public.user_profiles u ON u.id = ct.user_id"
            " WHERE ct.tenant_id = %s AND u.role = 'student' ORDER BY u.id",
            [tenant_id],
        )
    ]

    def nurse() -> uuid.UUID | None:
        return rng.choice(students) if students else None

    charted = rng.sample(patients, k=min(3, len(patients)))
    for patient_id, mrn in charted:
        _insert(conn, "patient_vitals", _vitals(rng, tenant_id, patient_id, nurse(), None))
        counts["vitals_inserted"] += 1
        scheduled = _fetch(
            conn,
            "SELECT id, dosage FROM public.patient_medications"
            " WHERE patient_id = %s AND status = 'active' AND cardinality(administration_times) > 0"
            " ORDER BY id",
            [patient_id],
        )
        for med_id, dosage in scheduled:
            # No tenant_id: a barcode scan only knows the patient and the label.
            _insert(
                conn,
                "medication_administrations",
                {
                    "id": _uuid(rng),
                    "medication_id": med_id,
                    "patient_id": patient_id,
                    "administered_by": nurse(),
                    "dose_given": dosage,
                    "barcode": _barcode(med_id),
                },
            )
            counts["administrations_inserted"] += 1
            _insert(conn, "medication_scans", _scan(rng, tenant_id, patient_id, med_id, None))
            counts["medication_scans_inserted"] += 1
            conn.execute(
                "UPDATE public.patient_medications"
                " SET label_printed = true, last_administered = now() WHERE id = %s",
                [med_id],
            )
        counts["notes_updated"] += conn.execute(
            "UPDATE public.patient_notes SET content = content || %s WHERE id ="
            " (SELECT id FROM public.patient_notes WHERE patient_id = %s"
            "  ORDER BY created_at, id LIMIT 1)",
            ["\nAddendum: patient reassessed, plan of care reviewed with instructor.", patient_id],
        ).rowcount
        _insert(
            conn,
            "patient_notes",
            {
                "id": _uuid(rng),
                "patient_id": patient_id,
                "note_type": "Progress",
                "content": rng.choice(_PROGRESS_NOTES),
                "created_by": nurse(),
            },
        )
        counts["notes_inserted"] += 1
        _insert(conn, "bowel_records", _bowel(rng, tenant_id, mrn, None))
        counts["bowel_records_inserted"] += 1
        _insert(conn, "diabetic_records", _glucose(rng, tenant_id, mrn, None, insulin=True))
        counts["diabetic_records_inserted"] += 1

    meds = _fetch(
        conn,
        "SELECT id FROM public.patient_medications"
        " WHERE tenant_id = %s AND status = 'active' ORDER BY id",
        [tenant_id],
    )
    if meds:
        counts["medications_status_changed"] += conn.execute(
            "UPDATE public.patient_medications SET status = 'held' WHERE id = %s",
            [rng.choice(meds)[0]],
        ).rowcount

    assessments = _fetch(
        conn,
        "SELECT a.id, a.wound_id FROM public.wound_assessments a"
        " JOIN public.patient_wounds w ON w.id = a.wound_id"
        " JOIN public.patients p ON p.id = w.patient_id"
        " WHERE p.tenant_id = %s ORDER BY a.id",
        [tenant_id],
    )
    if assessments:
        assessment_id, wound_id = rng.choice(assessments)
        counts["wound_assessments_updated"] += conn.execute(
            "UPDATE public.wound_assessments SET length_cm = %s, width_cm = %s, drainage = %s,"
            " photos = photos || %s WHERE id = %s",
            [
                _decimal(rng.uniform(0.8, 5.0), 1),
                _decimal(rng.uniform(0.5, 3.5), 1),
                rng.choice(_DRAINAGE),
                Jsonb([_photo(rng, wound_id, "session")]),
                assessment_id,
            ],
        ).rowcount
        _insert(conn, "wound_treatments", _treatment(rng, tenant_id, assessment_id, None))
        counts["wound_treatments_inserted"] += 1

    orders = _fetch(
        conn,
        "SELECT id, patient_id, order_type, order_text FROM public.doctors_orders"
        " WHERE tenant_id = %s AND status = 'active' ORDER BY id",
        [tenant_id],
    )
    if orders:
        old_id, order_patient, order_type, order_text = rng.choice(orders)
        conn.execute(
            "UPDATE public.doctors_orders SET status = 'superseded' WHERE id = %s", [old_id]
        )
        new_id = _uuid(rng)
        _insert(
            conn,
            "doctors_orders",
            {
                "id": new_id,
                "tenant_id": tenant_id,
                "patient_id": order_patient,
                "order_type": order_type,
                "order_text": f"{order_text} (revised)",
                "ordered_by": rng.choice(_ATTENDINGS),
                "supersedes_id": old_id,
            },
        )
        # The revision covers the medications the old order did.
        conn.execute(
            "INSERT INTO public.order_medications (order_id, medication_id, tenant_id)"
            " SELECT %s, medication_id, tenant_id FROM public.order_medications"
            " WHERE order_id = %s",
            [new_id, old_id],
        )
        counts["orders_superseded"] += 1

    # Handing a patient to another student changes part of a composite key.
    handoffs = _fetch(
        conn,
        "SELECT ct.patient_id, ct.user_id, s.id FROM public.patient_care_team ct"
        " CROSS JOIN unnest(%s::uuid[]) AS s(id)"
        " WHERE ct.tenant_id = %s AND ct.role = 'primary nurse'"
        " AND NOT EXISTS (SELECT 1 FROM public.patient_care_team o"
        "                 WHERE o.patient_id = ct.patient_id AND o.user_id = s.id)"
        " ORDER BY 1, 2, 3",
        [students, tenant_id],
    )
    if handoffs:
        care_patient, old_user, new_user = rng.choice(handoffs)
        counts["care_team_reassigned"] += conn.execute(
            "UPDATE public.patient_care_team SET user_id = %s"
            " WHERE patient_id = %s AND user_id = %s",
            [new_user, care_patient, old_user],
        ).rowcount

    # The discharged patient may be one charted above, so some of this
    # session's own inserts disappear again through the cascade.
    order = rng.sample(patients, k=len(patients))
    _readmit(conn, rng, tenant_id, order[0][0], nurse())
    counts["patients_readmitted"] += 1
    if len(order) > 1:
        counts["patients_deleted"] += conn.execute(
            "DELETE FROM public.patients WHERE id = %s", [order[1][0]]
        ).rowcount
    return counts


def _readmit(
    conn: psycopg.Connection[Any],
    rng: random.Random,
    tenant_id: uuid.UUID,
    old_id: uuid.UUID,
    nurse: uuid.UUID | None,
) -> None:
    """Discharge a patient and admit a new row under the same MRN."""
    kept = (
        "patient_id",
        "first_name",
        "last_name",
        "date_of_birth",
        "sex",
        "diagnosis",
        "allergies",
        "acuity",
        "admission_details",
    )
    query = sql.SQL("SELECT {} FROM public.patients WHERE id = %s").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in kept)
    )
    (values,) = _fetch(conn, query, [old_id])
    conn.execute("DELETE FROM public.patients WHERE id = %s", [old_id])
    row = dict(zip(kept, values, strict=True))
    row["admission_details"] = Jsonb({**row["admission_details"], "readmission": True})
    new_id = _uuid(rng)
    _insert(
        conn,
        "patients",
        {
            **row,
            "id": new_id,
            "tenant_id": tenant_id,
            "room_number": f"4A-{rng.randint(1, 30):02d}",
            # A new admission prints a new band.
            "wristband": _wristband(rng, set()),
        },
    )
    _insert(conn, "patient_vitals", _vitals(rng, tenant_id, new_id, nurse, None))
    _insert(
        conn,
        "patient_notes",
        {
            "id": _uuid(rng),
            "patient_id": new_id,
            "note_type": "Admission",
            "content": "Re-admitted from ED under the same MRN; home medications reconciled.",
            "created_by": nurse,
        },
    )


# --- seeding helpers ------------------------------------------------------------


class _Batch:
    """Rows collected per table, inserted in FK order with one executemany each."""

    def __init__(self) -> None:
        self._rows: dict[str, list[dict[str, Any]]] = {}

    def add(self, table: str, **values: Any) -> None:
        self._rows.setdefault(table, []).append(values)

    def flush(self, conn: psycopg.Connection[Any]) -> None:
        unknown = set(self._rows) - set(_INSERT_ORDER)
        if unknown:
            raise ValueError(f"no insert order for tables: {sorted(unknown)}")
        with conn.cursor() as cur:
            for table in _INSERT_ORDER:
                rows = self._rows.pop(table, [])
                # Rows differ in which columns they set; group runs of equal shape.
                for columns, group in itertools.groupby(rows, key=_columns):
                    query = _insert_query(table, columns)
                    cur.executemany(query, [list(r.values()) for r in group])


def _columns(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(row)


def _insert_query(table: str, columns: Sequence[str]) -> sql.Composed:
    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier("public", table),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        sql.SQL(", ").join(sql.Placeholder() for _ in columns),
    )


def _insert(conn: psycopg.Connection[Any], table: str, row: dict[str, Any]) -> None:
    conn.execute(_insert_query(table, list(row)), list(row.values()))


def _fetch(
    conn: psycopg.Connection[Any], query: LiteralString | sql.Composed, params: Params
) -> list[tuple[Any, ...]]:
    # The caller may have set a dict row factory on the connection.
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _decimal(value: float, places: int) -> Decimal:
    return Decimal(round(value, places)).quantize(Decimal(1).scaleb(-places))


def _barcode(medication_id: uuid.UUID) -> str:
    # Labels encode the medication id, which is why resets must preserve it.
    return "MED-" + medication_id.hex[:12].upper()


def _wristband(rng: random.Random, taken: set[str]) -> str:
    """A barcode no other patient of this seeding has (unique across tenants)."""
    while True:
        band = f"P{rng.randrange(10**8):08d}"
        if band not in taken:
            taken.add(band)
            return band


def _scan(
    rng: random.Random,
    tenant_id: uuid.UUID,
    patient_id: uuid.UUID,
    medication_id: uuid.UUID | None,
    at: datetime | None,
) -> dict[str, Any]:
    # The scanner stores the ids it read as text; a wristband-only scan has no
    # medication.
    row: dict[str, Any] = {
        "id": _uuid(rng),
        "tenant_id": tenant_id,
        "patient_id": str(patient_id),
        "medication_id": None if medication_id is None else str(medication_id),
        "barcode": None if medication_id is None else _barcode(medication_id),
        "notes": rng.choice((None, "Two-identifier check done", "Rescanned: label smudged")),
    }
    if at is not None:
        row["scanned_at"] = at
    return row


def _treatment(
    rng: random.Random, tenant_id: uuid.UUID, assessment_id: uuid.UUID, at: datetime | None
) -> dict[str, Any]:
    return {
        "id": _uuid(rng),
        "tenant_id": tenant_id,
        "wound_assessment_id": assessment_id,
        "treatment": rng.choice(_TREATMENTS),
        "applied_at": at or datetime.now(UTC),
    }


def _photo(rng: random.Random, wound_id: uuid.UUID, label: str) -> dict[str, str]:
    return {
        "path": f"wounds/{wound_id}/{label}-{rng.randrange(16**6):06x}.jpg",
        "caption": rng.choice(("wound bed", "periwound skin", "with measuring guide")),
    }


def _person(batch: _Batch, rng: random.Random, role: str) -> uuid.UUID:
    user_id = _uuid(rng)
    name = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
    if role == "instructor":
        name += ", MSN, RN"
    batch.add("user_profiles", id=user_id, full_name=name, role=role)
    return user_id


def _vitals(
    rng: random.Random,
    tenant_id: uuid.UUID,
    patient_id: uuid.UUID,
    nurse: uuid.UUID | None,
    at: datetime | None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": _uuid(rng),
        "tenant_id": tenant_id,
        "patient_id": patient_id,
        "temperature": _decimal(rng.uniform(36.1, 38.7), 1),
        "blood_pressure": f"{rng.randint(96, 168)}/{rng.randint(54, 98)}",
        "heart_rate": rng.randint(56, 122),
        "respiratory_rate": rng.randint(12, 26),
        "oxygen_saturation": _decimal(rng.uniform(89.0, 100.0), 1),
        "pain_score": rng.randint(0, 8),
        "recorded_by": nurse,
    }
    if at is not None:
        row["recorded_at"] = at
    return row


def _bowel(
    rng: random.Random, tenant_id: uuid.UUID, mrn: str, at: datetime | None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": _uuid(rng),
        "tenant_id": tenant_id,
        "patient_id": mrn,
        "stool_type": rng.randint(1, 7),
        "stool_amount": rng.choice(("small", "medium", "large")),
        "continent": rng.random() > 0.2,
        "notes": rng.choice((None, "Bowel sounds active x4", "Reports last BM 2 days ago")),
    }
    if at is not None:
        row["recorded_at"] = at
    return row


def _glucose(
    rng: random.Random, tenant_id: uuid.UUID, mrn: str, at: datetime | None, *, insulin: bool
) -> dict[str, Any]:
    glucose = _decimal(rng.uniform(68, 310), 1)
    units = max(0, int((glucose - 150) // 50) * 2) if insulin else 0
    row: dict[str, Any] = {
        "tenant_id": tenant_id,
        "patient_id": mrn,
        "glucose_mg_dl": glucose,
        "insulin_type": "Insulin lispro" if units else None,
        "insulin_units": _decimal(units, 1) if units else None,
        "carbs_grams": rng.choice((None, 30, 45, 60, 75)),
    }
    if at is not None:
        row["recorded_at"] = at
    return row


def _seed_patient(
    batch: _Batch,
    rng: random.Random,
    tenant_id: uuid.UUID,
    mrn: str,
    *,
    wristband: str,
    room: str,
    instructor: uuid.UUID,
    student: uuid.UUID,
    backup: uuid.UUID,
) -> None:
    patient_id = _uuid(rng)
    clock = _SEED_CLOCK
    age_days = rng.randint(19 * 365, 94 * 365)
    allergies = sorted(rng.sample(_ALLERGIES, k=rng.choice((0, 0, 1, 1, 2))))
    attending = rng.choice(_ATTENDINGS)
    admitted = clock - timedelta(days=rng.randint(1, 5), hours=rng.randint(0, 23))
    batch.add(
        "patients",
        id=patient_id,
        tenant_id=tenant_id,
        patient_id=mrn,
        wristband=wristband,
        first_name=rng.choice(_FIRST_NAMES),
        last_name=rng.choice(_LAST_NAMES),
        date_of_birth=clock.date() - timedelta(days=age_days),
        sex=rng.choice(("F", "M")),
        room_number=room,
        diagnosis=rng.choice(_DIAGNOSES),
        allergies=allergies,
        acuity=rng.choices(("stable", "guarded", "serious", "critical"), weights=(5, 3, 2, 1))[0],
        admission_details=Jsonb(
            {
                "admitted_at": admitted.isoformat(),
                "attending": attending,
                "code_status": rng.choice(("Full code", "Full code", "DNR/DNI")),
                "isolation": rng.choice((None, None, "Contact", "Droplet")),
                "height_cm": rng.randint(150, 193),
                "weight_kg": float(_decimal(rng.uniform(48, 130), 1)),
            }
        ),
        created_at=admitted,
        updated_at=admitted,
    )

    for hours in (8, 4, 0):
        at = clock - timedelta(hours=hours)
        batch.add("patient_vitals", **_vitals(rng, tenant_id, patient_id, student, at))

    # Nobody is ordered a drug they are allergic to.
    safe = [m for m in _FORMULARY if not any(m[0].startswith(a) for a in allergies)]
    on_insulin = False
    med_ids: list[uuid.UUID] = []
    for name, dosage, route, frequency, times in rng.sample(safe, k=rng.randint(2, 4)):
        med_id = _uuid(rng)
        med_ids.append(med_id)
        status = "held" if rng.random() < 0.15 else "active"
        on_insulin = on_insulin or name.startswith("Insulin")
        given = clock - timedelta(minutes=rng.randint(30, 600)) if status == "active" else None
        batch.add(
            "patient_medications",
            id=med_id,
            tenant_id=tenant_id,
            patient_id=patient_id,
            name=name,
            dosage=dosage,
            route=route,
            frequency=frequency,
            administration_times=list(times),
            status=status,
            prescribed_by=attending,
            start_date=admitted.date(),
            label_printed=given is not None,
            last_administered=given,
            created_at=admitted,
            updated_at=admitted,
        )
        if given is not None:
            batch.add(
                "medication_administrations",
                id=_uuid(rng),
                tenant_id=tenant_id,
                medication_id=med_id,
                patient_id=patient_id,
                administered_at=given,
                administered_by=student,
                dose_given=dosage,
                barcode=_barcode(med_id),
            )
            batch.add("medication_scans", **_scan(rng, tenant_id, patient_id, med_id, given))
    batch.add("medication_scans", **_scan(rng, tenant_id, patient_id, None, admitted))

    # tenant_id left out on purpose: the fill_tenant_from_patient trigger supplies it.
    batch.add(
        "patient_notes",
        id=_uuid(rng),
        patient_id=patient_id,
        note_type="Admission",
        content=f"Admitted with {rng.choice(_DIAGNOSES).lower()}. Oriented x{rng.randint(2, 4)}; "
        f"{'no known allergies' if not allergies else 'allergies: ' + ', '.join(allergies)}.",
        created_by=student,
        created_at=admitted,
        updated_at=admitted,
    )
    batch.add(
        "patient_notes",
        id=_uuid(rng),
        patient_id=patient_id,
        note_type="Progress",
        content=rng.choice(_PROGRESS_NOTES),
        created_by=student,
        created_at=clock - timedelta(hours=2),
        updated_at=clock - timedelta(hours=2),
    )

    panel_name = rng.choice(sorted(_PANELS))
    panel_id = _uuid(rng)
    batch.add(
        "lab_panels",
        id=panel_id,
        tenant_id=tenant_id,
        patient_id=patient_id,
        panel_name=panel_name,
        status="resulted",
        collected_at=clock - timedelta(hours=rng.randint(3, 20)),
    )
    for test, units, low, high, places in _PANELS[panel_name]:
        spread = (high - low) * 0.3
        value = _decimal(rng.uniform(low - spread, high + spread), places)
        flag = "L" if value < Decimal(str(low)) else "H" if value > Decimal(str(high)) else "N"
        if test == "Potassium" and value > Decimal("5.5"):
            flag = "C"
        batch.add(
            "lab_results",
            id=_uuid(rng),
            panel_id=panel_id,
            test_name=test,
            value=value,
            units=units,
            ref_low=Decimal(str(low)),
            ref_high=Decimal(str(high)),
            flag=flag,
        )

    # A chain of three: every revision points at the order it replaces.
    chain = (
        ("Vital signs every 8 hours", admitted, "superseded"),
        ("Vital signs every 4 hours", clock - timedelta(hours=12), "superseded"),
        (
            "Vital signs every 2 hours; notify provider if SBP < 90",
            clock - timedelta(hours=6),
            "active",
        ),
    )
    previous: uuid.UUID | None = None
    for text, ordered_at, order_status in chain:
        order_id = _uuid(rng)
        batch.add(
            "doctors_orders",
            id=order_id,
            tenant_id=tenant_id,
            patient_id=patient_id,
            order_type="Nursing",
            order_text=text,
            ordered_by=attending,
            ordered_at=ordered_at,
            status=order_status,
            supersedes_id=previous,
            updated_at=clock - timedelta(hours=6),
        )
        previous = order_id
    med_order = _uuid(rng)
    batch.add(
        "doctors_orders",
        id=med_order,
        tenant_id=tenant_id,
        patient_id=patient_id,
        order_type="Medication",
        order_text="Admission medication orders",
        ordered_by=attending,
        ordered_at=admitted,
        status="active",
        # Set, though NULL, so that every order has one shape and all go in one
        # batch (runs of equal shape are; alternating ones cost a round trip each).
        supersedes_id=None,
        updated_at=admitted,
    )
    for med_id in med_ids:
        batch.add(
            "order_medications", order_id=med_order, medication_id=med_id, tenant_id=tenant_id
        )
    diet = rng.choice(
        ("Diet: NPO after midnight", "Diet: cardiac, 2 g sodium", "Diet: consistent carbohydrate")
    )
    batch.add(
        "doctors_orders",
        id=_uuid(rng),
        tenant_id=tenant_id,
        patient_id=patient_id,
        order_type="Diet",
        order_text=diet,
        ordered_by=attending,
        ordered_at=admitted,
        status="active",
        supersedes_id=None,
        updated_at=admitted,
    )

    batch.add(
        "handover_notes",
        id=_uuid(rng),
        patient_id=patient_id,
        shift=rng.choice(("Night to day", "Day to evening")),
        sbar=Jsonb(
            {
                "situation": f"Day {(clock - admitted).days + 1} of admission,"
                f" {rng.choice(_DIAGNOSES).lower()}.",
                "background": (
                    f"Attending {attending}. Allergies: {', '.join(allergies) or 'NKDA'}."
                ),
                "assessment": rng.choice(_PROGRESS_NOTES),
                "recommendation": rng.choice(
                    (
                        "Continue current plan; recheck vitals at 10:00.",
                        "Follow up AM labs and notify provider of abnormal potassium.",
                        "Encourage ambulation and incentive spirometry every hour while awake.",
                    )
                ),
            }
        ),
        created_by=student,
        created_at=clock - timedelta(minutes=30),
        updated_at=clock - timedelta(minutes=30),
    )

    location, wound_type, stage = rng.choice(_WOUNDS)
    wound_id = _uuid(rng)
    batch.add(
        "patient_wounds",
        id=wound_id,
        patient_id=patient_id,
        location=location,
        wound_type=wound_type,
        stage=stage,
        first_noted=admitted.date(),
        updated_at=admitted,
    )
    for hours, photos in ((26, 0), (2, rng.randint(1, 2))):
        assessment_id = _uuid(rng)
        batch.add(
            "wound_assessments",
            id=assessment_id,
            wound_id=wound_id,
            assessed_at=clock - timedelta(hours=hours),
            length_cm=_decimal(rng.uniform(0.8, 6.0), 1),
            width_cm=_decimal(rng.uniform(0.5, 4.0), 1),
            depth_cm=_decimal(rng.uniform(0.1, 1.5), 1),
            drainage=rng.choice(_DRAINAGE),
            photos=Jsonb([_photo(rng, wound_id, "seed") for _ in range(photos)]),
            assessed_by=student,
            updated_at=clock - timedelta(hours=hours),
        )
        at = clock - timedelta(hours=hours, minutes=-15)
        batch.add("wound_treatments", **_treatment(rng, tenant_id, assessment_id, at))

    team = (
        (student, "primary nurse"),
        (backup, "secondary nurse"),
        (instructor, "clinical instructor"),
    )
    for user_id, role in team:
        batch.add(
            "patient_care_team",
            patient_id=patient_id,
            user_id=user_id,
            tenant_id=tenant_id,
            role=role,
            assigned_at=admitted,
        )

    for hours in (20, 6)[: rng.randint(1, 2)]:
        at = clock - timedelta(hours=hours)
        batch.add("bowel_records", **_bowel(rng, tenant_id, mrn, at))
    # Insulin patients get fingersticks before meals and at bedtime; others one.
    for hours in (21, 16, 11, 6) if on_insulin else (6,):
        at = clock - timedelta(hours=hours)
        batch.add("diabetic_records", **_glucose(rng, tenant_id, mrn, at, insulin=on_insulin))
