-- Rows for public.simulation_table_config describing the clinic fixture.
-- Kept apart from schema.sql so tests can start from a schema with an empty
-- config (discovery, doctor) and add rows themselves.
--
-- How a row says where its tenant is:
--   has_tenant_id                    the table's own tenant_id column is the tenant;
--   parent_table + parent_column     follow this table's FK column to the parent
--                                    row and resolve the parent's tenant the same way;
--   has_patient_id (no parent_table) follow the uuid patient_id to public.patients.
-- has_patient_id is true only where patient_id is a uuid FK to patients; the
-- MRN-keyed tables have a text patient_id and say so in notes.
-- delete_order and requires_id_mapping are kept because the user's old functions
-- read them; simtrail derives FK order from pg_constraint instead.

INSERT INTO public.simulation_table_config
    (table_name, category, has_tenant_id, has_patient_id, parent_table, parent_column,
     requires_id_mapping, delete_order, notes)
VALUES
    ('patients', 'core', true, false, NULL, NULL, true, 100,
     'patient_id is the MRN (text), unique per tenant; ids are printed on wristbands'),
    ('patient_medications', 'medications', true, true, NULL, NULL, true, 60,
     'ids are printed on medication labels'),
    ('medication_administrations', 'medications', true, true, NULL, NULL, false, 20,
     'barcode scans; cascades from both patients and patient_medications'),
    ('medication_scans', 'medications', true, false, NULL, NULL, false, 20,
     'patient_id and medication_id hold uuids as text, no foreign key'),
    ('order_medications', 'medications', true, false, NULL, NULL, false, 20,
     'composite primary key (order_id, medication_id), both foreign keys'),
    ('patient_vitals', 'clinical', true, true, NULL, NULL, false, 30, NULL),
    ('patient_notes', 'clinical', true, true, NULL, NULL, false, 30,
     'tenant_id filled from the patient by a BEFORE INSERT trigger when omitted'),
    ('doctors_orders', 'clinical', true, true, NULL, NULL, true, 40,
     'supersedes_id references another order of the same table'),
    ('patient_care_team', 'clinical', true, true, NULL, NULL, false, 30,
     'composite primary key (patient_id, user_id)'),
    ('lab_panels', 'labs', true, true, NULL, NULL, true, 50, NULL),
    ('lab_results', 'labs', false, false, 'lab_panels', 'panel_id', false, 10,
     'no tenant_id or patient_id; tenant via lab_panels'),
    ('bowel_records', 'assessments', true, false, NULL, NULL, false, 30,
     'patient_id is the MRN as text, not a foreign key'),
    ('diabetic_records', 'assessments', true, false, NULL, NULL, false, 30,
     'patient_id is the MRN as text; id is an identity column (GENERATED ALWAYS)'),
    ('handover_notes', 'clinical', false, true, NULL, NULL, false, 30,
     'no tenant_id; tenant via patients.patient_id uuid'),
    ('patient_wounds', 'clinical', false, true, NULL, NULL, true, 50,
     'no tenant_id; tenant via patients'),
    ('wound_assessments', 'clinical', false, false, 'patient_wounds', 'wound_id', false, 10,
     'no tenant_id or patient_id; tenant via patient_wounds, then patients'),
    ('wound_treatments', 'clinical', true, false, NULL, NULL, false, 5,
     'wound_assessment_id is a uuid with no foreign key');
