-- The config table, with the columns of the user's own design note. Created
-- only when missing: an existing table, and its rows, are adopted as they are.
CREATE TABLE IF NOT EXISTS public.simulation_table_config (
    id serial PRIMARY KEY,
    table_name text NOT NULL UNIQUE,
    category text NOT NULL,
    has_tenant_id boolean DEFAULT false,
    has_patient_id boolean DEFAULT false,
    parent_table text,
    parent_column text,
    requires_id_mapping boolean DEFAULT false,
    delete_order integer,
    enabled boolean DEFAULT true,
    notes text
);
