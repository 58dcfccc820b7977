-- Configuration B: the seed note's "Solution 3", the trigger most teams write
-- first. Same log columns as the note's simulation_tenant_changes, one
-- AFTER ... FOR EACH ROW trigger that stores row_to_json of the row.
--
-- Two deliberate changes from the note:
--   * it also logs DELETE (the old row) and UPDATE (old and new rows), so it
--     records the same history simtrail does;
--   * the note's `IF EXISTS (SELECT 1 FROM simulation_active ...)` filter is
--     left out. That lookup only adds cost to this configuration, so without
--     it the "never slower than the naive trigger" bar is stricter.

CREATE TABLE public.simulation_tenant_changes (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL,
    table_name text NOT NULL,
    operation  text NOT NULL, -- INSERT, UPDATE, DELETE
    record_id  uuid NOT NULL,
    old_data   jsonb,
    new_data   jsonb,
    changed_at timestamptz DEFAULT now()
);

CREATE FUNCTION public.track_patient_data_changes()
RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO simulation_tenant_changes (tenant_id, table_name, operation, record_id, new_data)
        VALUES (NEW.tenant_id, TG_TABLE_NAME, TG_OP, NEW.id, row_to_json(NEW));
        RETURN NEW;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO simulation_tenant_changes
            (tenant_id, table_name, operation, record_id, old_data, new_data)
        VALUES (NEW.tenant_id, TG_TABLE_NAME, TG_OP, NEW.id, row_to_json(OLD), row_to_json(NEW));
        RETURN NEW;
    END IF;
    INSERT INTO simulation_tenant_changes (tenant_id, table_name, operation, record_id, old_data)
    VALUES (OLD.tenant_id, TG_TABLE_NAME, TG_OP, OLD.id, row_to_json(OLD));
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER track_changes_patient_vitals
    AFTER INSERT OR UPDATE OR DELETE ON public.patient_vitals
    FOR EACH ROW EXECUTE FUNCTION public.track_patient_data_changes();
