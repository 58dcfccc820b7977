-- The seed's Solution 3, as a user would extend it to tables without a
-- tenant_id: one AFTER ROW trigger per table that looks the tenant up through
-- the parent row at the moment it fires. Used to show the cascade failure.
CREATE TABLE public.naive_changes (
    id bigserial PRIMARY KEY,
    tenant_id uuid,
    table_name text NOT NULL,
    operation text NOT NULL,
    old_data jsonb,
    new_data jsonb,
    changed_at timestamptz DEFAULT now()
);

CREATE FUNCTION public.naive_track_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_row jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
    v_tenant uuid;
BEGIN
    IF TG_TABLE_NAME IN ('handover_notes', 'patient_wounds') THEN
        SELECT p.tenant_id INTO v_tenant FROM public.patients p
        WHERE p.id = (v_row ->> 'patient_id')::uuid;
    ELSIF TG_TABLE_NAME = 'wound_assessments' THEN
        SELECT p.tenant_id INTO v_tenant FROM public.patient_wounds w
        JOIN public.patients p ON p.id = w.patient_id WHERE w.id = (v_row ->> 'wound_id')::uuid;
    ELSIF TG_TABLE_NAME = 'lab_results' THEN
        SELECT l.tenant_id INTO v_tenant FROM public.lab_panels l
        WHERE l.id = (v_row ->> 'panel_id')::uuid;
    END IF;
    INSERT INTO public.naive_changes (tenant_id, table_name, operation, old_data, new_data)
    VALUES (v_tenant, TG_TABLE_NAME, TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN NULL;
END
$$;

CREATE TRIGGER naive_track AFTER INSERT OR UPDATE OR DELETE ON public.handover_notes
    FOR EACH ROW EXECUTE FUNCTION public.naive_track_changes();
CREATE TRIGGER naive_track AFTER INSERT OR UPDATE OR DELETE ON public.patient_wounds
    FOR EACH ROW EXECUTE FUNCTION public.naive_track_changes();
CREATE TRIGGER naive_track AFTER INSERT OR UPDATE OR DELETE ON public.wound_assessments
    FOR EACH ROW EXECUTE FUNCTION public.naive_track_changes();
CREATE TRIGGER naive_track AFTER INSERT OR UPDATE OR DELETE ON public.lab_results
    FOR EACH ROW EXECUTE FUNCTION public.naive_track_changes();
