-- simtrail "clinic" fixture: a compact model of a nursing-simulation EHR.
-- Applied once, as a superuser, to an empty database (PostgreSQL 15/16).
-- Every awkward shape the first user's production schema has is reproduced on
-- purpose; do not "clean up" a table without checking which hard case it carries.

-- Supabase ships these roles; a plain server does not.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN;
    END IF;
END
$$;

CREATE TYPE public.acuity_level AS ENUM ('stable', 'guarded', 'serious', 'critical');
CREATE TYPE public.medication_status AS ENUM ('active', 'held', 'discontinued', 'completed');

-- Untracked: a class section. Deleting one orphans its patients (SET NULL)
-- rather than destroying charting history.
CREATE TABLE public.tenants (
    id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL
);

-- Untracked and global (students and instructors move between sections), yet
-- tracked tables point at it: a rewind may meet a reference to a vanished user.
CREATE TABLE public.user_profiles (
    id        uuid PRIMARY KEY,
    full_name text NOT NULL,
    role      text NOT NULL,
    -- The class a user lands in after login: a reference to a tenant, not a
    -- sign that the profile is that class's data (discovery must not propose it).
    default_tenant_id uuid REFERENCES public.tenants (id) ON DELETE SET NULL
);

-- Untracked catalogue: a nursing program owns many class sections, and has a
-- tenant_id of its own (the school that runs it). Discovery must call it, and
-- tenants, "not tenant data": rewinding a class must never delete either.
CREATE TABLE public.programs (
    id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name      text NOT NULL,
    tenant_id uuid REFERENCES public.tenants (id) ON DELETE SET NULL
);
ALTER TABLE public.tenants
    ADD COLUMN program_id uuid REFERENCES public.programs (id) ON DELETE SET NULL;

CREATE TABLE public.patients (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid REFERENCES public.tenants (id) ON DELETE SET NULL,
    patient_id        text NOT NULL,
    first_name        text NOT NULL,
    last_name         text NOT NULL,
    full_name         text GENERATED ALWAYS AS (first_name || ' ' || last_name) STORED,
    date_of_birth     date NOT NULL,
    sex               text,
    room_number       text,
    diagnosis         text,
    allergies         text[] NOT NULL DEFAULT '{}',
    acuity            public.acuity_level NOT NULL DEFAULT 'stable',
    admission_details jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- The barcode printed on the wristband: unique across every class, not
    -- just within one, so a copy must generate a fresh one (a copy rule).
    wristband         text UNIQUE,
    -- Not the PK: a student may discharge MRN-100234 and re-admit it in the same
    -- session, so two different row ids carry one MRN over time.
    CONSTRAINT patients_tenant_mrn_key UNIQUE (tenant_id, patient_id)
);

CREATE TABLE public.patient_vitals (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid,
    patient_id        uuid NOT NULL REFERENCES public.patients (id) ON DELETE CASCADE,
    temperature       numeric(4,1),
    blood_pressure    text,
    heart_rate        integer,
    respiratory_rate  integer,
    oxygen_saturation numeric(4,1),
    pain_score        smallint CHECK (pain_score BETWEEN 0 AND 10),
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    recorded_by       uuid REFERENCES public.user_profiles (id) ON DELETE SET NULL
);

-- Ids here are printed on medication labels, so a reset must keep them.
CREATE TABLE public.patient_medications (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid,
    patient_id           uuid NOT NULL REFERENCES public.patients (id) ON DELETE CASCADE,
    name                 text NOT NULL,
    dosage               text NOT NULL,
    route                text NOT NULL,
    frequency            text NOT NULL,
    administration_times text[] NOT NULL DEFAULT '{}',
    status               public.medication_status NOT NULL DEFAULT 'active',
    prescribed_by        text,
    start_date           date,
    -- State of the session, not of the template: a launched class starts
    -- with no label printed and nothing given (copy rules reset both).
    label_printed        boolean NOT NULL DEFAULT false,
    last_administered    timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- Two cascade paths reach this table when a patient is deleted (directly and
-- through the medication), which is what a real barcode scan record looks like.
CREATE TABLE public.medication_administrations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid,
    medication_id   uuid NOT NULL REFERENCES public.patient_medications (id) ON DELETE CASCADE,
    patient_id      uuid NOT NULL REFERENCES public.patients (id) ON DELETE CASCADE,
    administered_at timestamptz NOT NULL DEFAULT now(),
    administered_by uuid REFERENCES public.user_profiles (id) ON DELETE SET NULL,
    dose_given      text,
    barcode         text,
    notes           text
);

CREATE TABLE public.patient_notes (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid,
    patient_id uuid NOT NULL REFERENCES public.patients (id) ON DELETE CASCADE,
    note_type  text NOT NULL,
    content    text NOT NULL,
    created_by uuid REFERENCES public.user_profiles (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.lab_panels (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid,
    patient_id   uuid NOT NULL REFERENCES public.patients (id) ON DELETE CASCADE,
    panel_name   text NOT NULL,
    status       text NOT NULL DEFAULT 'resulted',
    collected_at timestamptz
);

CREATE TABLE public.doctors_orders (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid,
    patient_id    uuid NOT NULL REFERENCES public.patients (id) ON DELETE CASCADE,
    order_type    text NOT NULL,
    order_text    text NOT NULL,
    ordered_by    text,
    ordered_at    timestamptz NOT NULL DEFAULT now(),
    status        text NOT NULL DEFAULT 'active',
    -- A revised order points at the one it replaces; restoring both needs an
    -- insert order (or deferred checking) that respects the chain.
    supersedes_id uuid REFERENCES public.doctors_orders (id) ON DELETE SET NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Legacy charting tables keyed by the human MRN rather than the row id; no FK,
-- so deleting a patient leaves them behind and a re-admitted MRN picks them up.
CREATE TABLE public.bowel_records (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid,
    patient_id   text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    stool_type   smallint CHECK (stool_type BETWEEN 1 AND 7),
    stool_amount text,
    continent    boolean,
    notes        text
);

CREATE TABLE public.diabetic_records (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      uuid,
    patient_id     text NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    glucose_mg_dl  numeric(5,1) NOT NULL,
    insulin_type   text,
    insulin_units  numeric(4,1),
    carbs_grams    integer
);

-- The user's scanner log, as their schema has it: both references hold the
-- referenced row's uuid as text, with no FK (declared references, see
-- copy_config.sql). Deleting the patient leaves the scans behind.
CREATE TABLE public.medication_scans (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid,
    patient_id    text NOT NULL,
    medication_id text,
    scanned_at    timestamptz DEFAULT now(),
    barcode       text,
    notes         text
);

-- Which medications an order covers: a primary key made of two references
-- to copied rows, so a copy must remap both halves of the key.
CREATE TABLE public.order_medications (
    order_id      uuid NOT NULL REFERENCES public.doctors_orders (id) ON DELETE CASCADE,
    medication_id uuid NOT NULL REFERENCES public.patient_medications (id) ON DELETE CASCADE,
    tenant_id     uuid,
    PRIMARY KEY (order_id, medication_id)
);

-- No tenant_id: the tenant is only reachable through the patient.
CREATE TABLE public.handover_notes (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id uuid NOT NULL REFERENCES public.patients (id) ON DELETE CASCADE,
    shift      text NOT NULL,
    sbar       jsonb NOT NULL,
    created_by uuid REFERENCES public.user_profiles (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.patient_wounds (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id  uuid NOT NULL REFERENCES public.patients (id) ON DELETE CASCADE,
    location    text NOT NULL,
    wound_type  text NOT NULL,
    stage       text,
    first_noted date,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Neither tenant_id nor patient_id: two hops (wound, then patient) to the tenant.
-- When the patient is deleted, wound and assessment rows vanish in one statement.
CREATE TABLE public.wound_assessments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    wound_id    uuid NOT NULL REFERENCES public.patient_wounds (id) ON DELETE CASCADE,
    assessed_at timestamptz NOT NULL DEFAULT now(),
    length_cm   numeric(4,1),
    width_cm    numeric(4,1),
    depth_cm    numeric(4,1),
    drainage    text,
    photos      jsonb NOT NULL DEFAULT '[]',
    assessed_by uuid REFERENCES public.user_profiles (id) ON DELETE SET NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A uuid reference with no FK (a declared reference): the assessment may be
-- deleted and its treatments stay.
CREATE TABLE public.wound_treatments (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid,
    wound_assessment_id uuid NOT NULL,
    treatment           text,
    applied_at          timestamptz
);

CREATE TABLE public.lab_results (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    panel_id   uuid NOT NULL REFERENCES public.lab_panels (id) ON DELETE CASCADE,
    test_name  text NOT NULL,
    value      numeric NOT NULL,
    units      text,
    ref_low    numeric,
    ref_high   numeric,
    flag       text CHECK (flag IN ('L', 'N', 'H', 'C'))
);

-- Composite key, and a CASCADE that starts in an untracked table (a user).
CREATE TABLE public.patient_care_team (
    patient_id  uuid NOT NULL REFERENCES public.patients (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES public.user_profiles (id) ON DELETE CASCADE,
    tenant_id   uuid,
    role        text NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, user_id)
);

-- Untracked audit trail of the application: who opened which chart. The user
-- reference is NOT NULL, the patient one is not (audit rows outlive charts),
-- so it is not class data and discovery says why.
CREATE TABLE public.chart_audit (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES public.user_profiles (id) ON DELETE CASCADE,
    patient_id uuid REFERENCES public.patients (id) ON DELETE SET NULL,
    action     text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);

-- Application triggers. They fire again whenever a tool writes rows back, which
-- is exactly why a rewind has to think about them.

CREATE FUNCTION public.stamp_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE FUNCTION public.fill_tenant_from_patient() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    IF NEW.tenant_id IS NULL THEN
        NEW.tenant_id := (SELECT p.tenant_id FROM public.patients p WHERE p.id = NEW.patient_id);
    END IF;
    RETURN NEW;
END
$$;

-- MRNs are on wristbands; renaming one by accident breaks every MRN-keyed table.
CREATE FUNCTION public.guard_patient_mrn() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    IF coalesce(current_setting('app.allow_mrn_change', true), '') <> 'on' THEN
        RAISE EXCEPTION 'patient identifier % may not change to %', OLD.patient_id, NEW.patient_id
            USING ERRCODE = 'check_violation',
                  HINT = 'SET app.allow_mrn_change = on for a deliberate correction';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER patients_guard_mrn BEFORE UPDATE ON public.patients
    FOR EACH ROW WHEN (OLD.patient_id IS DISTINCT FROM NEW.patient_id)
    EXECUTE FUNCTION public.guard_patient_mrn();

CREATE TRIGGER patients_stamp BEFORE UPDATE ON public.patients
    FOR EACH ROW EXECUTE FUNCTION public.stamp_updated_at();
CREATE TRIGGER patient_medications_stamp BEFORE UPDATE ON public.patient_medications
    FOR EACH ROW EXECUTE FUNCTION public.stamp_updated_at();
CREATE TRIGGER patient_notes_stamp BEFORE UPDATE ON public.patient_notes
    FOR EACH ROW EXECUTE FUNCTION public.stamp_updated_at();
CREATE TRIGGER doctors_orders_stamp BEFORE UPDATE ON public.doctors_orders
    FOR EACH ROW EXECUTE FUNCTION public.stamp_updated_at();
CREATE TRIGGER handover_notes_stamp BEFORE UPDATE ON public.handover_notes
    FOR EACH ROW EXECUTE FUNCTION public.stamp_updated_at();
CREATE TRIGGER patient_wounds_stamp BEFORE UPDATE ON public.patient_wounds
    FOR EACH ROW EXECUTE FUNCTION public.stamp_updated_at();
CREATE TRIGGER wound_assessments_stamp BEFORE UPDATE ON public.wound_assessments
    FOR EACH ROW EXECUTE FUNCTION public.stamp_updated_at();

CREATE TRIGGER patient_notes_fill_tenant BEFORE INSERT ON public.patient_notes
    FOR EACH ROW EXECUTE FUNCTION public.fill_tenant_from_patient();
CREATE TRIGGER medication_administrations_fill_tenant BEFORE INSERT ON public.medication_administrations
    FOR EACH ROW EXECUTE FUNCTION public.fill_tenant_from_patient();

-- Row-level security, PostgREST style: the tenant comes from the JWT claims.
-- Policies on tables without tenant_id qualify their own columns: an unqualified
-- patient_id inside the subquery would bind to patients.patient_id, the MRN.
CREATE FUNCTION public.jwt_tenant_id() RETURNS uuid
LANGUAGE sql STABLE SET search_path = '' AS $$
    SELECT (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'tenant_id')::uuid
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'patients', 'patient_vitals', 'patient_medications', 'medication_administrations',
        'patient_notes', 'lab_panels', 'doctors_orders', 'bowel_records',
        'diabetic_records', 'patient_care_team', 'medication_scans', 'order_medications',
        'wound_treatments'
    ] LOOP
        EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY %I ON public.%I FOR ALL TO authenticated '
            'USING (tenant_id = public.jwt_tenant_id()) '
            'WITH CHECK (tenant_id = public.jwt_tenant_id())',
            t || '_tenant', t);
    END LOOP;
END
$$;

ALTER TABLE public.handover_notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY handover_notes_tenant ON public.handover_notes FOR ALL TO authenticated
    USING (EXISTS (SELECT 1 FROM public.patients p
                   WHERE p.id = handover_notes.patient_id AND p.tenant_id = public.jwt_tenant_id()))
    WITH CHECK (EXISTS (SELECT 1 FROM public.patients p
                        WHERE p.id = handover_notes.patient_id AND p.tenant_id = public.jwt_tenant_id()));

ALTER TABLE public.patient_wounds ENABLE ROW LEVEL SECURITY;
CREATE POLICY patient_wounds_tenant ON public.patient_wounds FOR ALL TO authenticated
    USING (EXISTS (SELECT 1 FROM public.patients p
                   WHERE p.id = patient_wounds.patient_id AND p.tenant_id = public.jwt_tenant_id()))
    WITH CHECK (EXISTS (SELECT 1 FROM public.patients p
                        WHERE p.id = patient_wounds.patient_id AND p.tenant_id = public.jwt_tenant_id()));

ALTER TABLE public.lab_results ENABLE ROW LEVEL SECURITY;
CREATE POLICY lab_results_tenant ON public.lab_results FOR ALL TO authenticated
    USING (EXISTS (SELECT 1 FROM public.lab_panels lp
                   WHERE lp.id = lab_results.panel_id AND lp.tenant_id = public.jwt_tenant_id()))
    WITH CHECK (EXISTS (SELECT 1 FROM public.lab_panels lp
                        WHERE lp.id = lab_results.panel_id AND lp.tenant_id = public.jwt_tenant_id()));

ALTER TABLE public.wound_assessments ENABLE ROW LEVEL SECURITY;
CREATE POLICY wound_assessments_tenant ON public.wound_assessments FOR ALL TO authenticated
    USING (EXISTS (SELECT 1 FROM public.patient_wounds w JOIN public.patients p ON p.id = w.patient_id
                   WHERE w.id = wound_assessments.wound_id AND p.tenant_id = public.jwt_tenant_id()))
    WITH CHECK (EXISTS (SELECT 1 FROM public.patient_wounds w JOIN public.patients p ON p.id = w.patient_id
                        WHERE w.id = wound_assessments.wound_id AND p.tenant_id = public.jwt_tenant_id()));

GRANT USAGE ON SCHEMA public TO anon, authenticated;
GRANT SELECT ON public.tenants, public.user_profiles TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    public.patients, public.patient_vitals, public.patient_medications,
    public.medication_administrations, public.patient_notes, public.lab_panels,
    public.lab_results, public.doctors_orders, public.bowel_records,
    public.diabetic_records, public.handover_notes, public.patient_wounds,
    public.wound_assessments, public.patient_care_team, public.medication_scans,
    public.order_medications, public.wound_treatments
TO authenticated;
GRANT USAGE ON SEQUENCE public.diabetic_records_id_seq TO authenticated;

-- The user's own table, columns exactly as in their design note. simtrail adopts
-- it and must never recreate or drop it. Rows live in config.sql.
CREATE TABLE public.simulation_table_config (
    id                  serial PRIMARY KEY,
    table_name          text NOT NULL UNIQUE,
    category            text NOT NULL,
    has_tenant_id       boolean DEFAULT false,
    has_patient_id      boolean DEFAULT false,
    parent_table        text,
    parent_column       text,
    requires_id_mapping boolean DEFAULT false,
    delete_order        integer,
    enabled             boolean DEFAULT true,
    notes               text
);
GRANT SELECT ON public.simulation_table_config TO authenticated;
