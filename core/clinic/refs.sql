-- The clinic fixture's references without a foreign key, declared to
-- simtrail (run after `simtrail install`; the tables must be captured).
-- Legacy charting tables name their patient by MRN (patients.patient_id,
-- text, unique per tenant), not by row id.
SELECT simtrail.add_reference('public.bowel_records', 'patient_id', 'public.patients', 'patient_id');
SELECT simtrail.add_reference('public.diabetic_records', 'patient_id', 'public.patients', 'patient_id');
