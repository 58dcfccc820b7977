-- The clinic fixture's declared references and copy rules (simtrail.refs and
-- simtrail.copy_rules, schema v12), applied after `simtrail install`.
-- Plain INSERTs rather than simtrail.add_reference / set_copy_rule, so the
-- fixture does not depend on the functions it is used to test.

-- Columns that hold another configured row's key with no foreign key.
INSERT INTO simtrail.refs (table_name, column_name, ref_table, ref_column) VALUES
    -- uuids as text, to the primary key
    ('public.medication_scans', 'patient_id', 'public.patients', 'id'),
    ('public.medication_scans', 'medication_id', 'public.patient_medications', 'id'),
    -- a uuid, to the primary key
    ('public.wound_treatments', 'wound_assessment_id', 'public.wound_assessments', 'id'),
    -- the MRN, to a column unique together with the tenant column
    ('public.bowel_records', 'patient_id', 'public.patients', 'patient_id'),
    ('public.diabetic_records', 'patient_id', 'public.patients', 'patient_id');

-- What a copy writes instead of the source's value.
INSERT INTO simtrail.copy_rules (table_name, column_name, rule, expression) VALUES
    -- unique across all tenants: a copy needs a fresh barcode
    ('public.patients', 'wristband', 'sql',
     $$'P' || lpad((floor(random()*1e8))::bigint::text, 8, '0')$$),
    -- the user's resets on launch
    ('public.lab_panels', 'status', 'sql', $$'new'$$),
    ('public.patient_medications', 'label_printed', 'default', NULL),
    ('public.patient_medications', 'last_administered', 'null', NULL);
