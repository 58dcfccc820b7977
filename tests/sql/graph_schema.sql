-- The graph schema of tests/graphs.py (read its docstring for what each
-- table carries), its config rows, tenants and users. Applied once per server
-- to a database holding the clinic's untracked tables.
CREATE TABLE public.g_root (
    id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid REFERENCES public.tenants (id) ON DELETE SET NULL,
    parent_id uuid REFERENCES public.g_root (id) ON DELETE SET NULL,
    owner_id  uuid REFERENCES public.user_profiles (id) ON DELETE SET NULL,
    label     text NOT NULL,
    code      text NOT NULL UNIQUE,
    status    text NOT NULL DEFAULT 'new',
    printed   boolean,
    score     numeric(6,2),
    meta      jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE public.g_child (
    id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    root_id uuid NOT NULL REFERENCES public.g_root (id) ON DELETE CASCADE,
    prev_id uuid REFERENCES public.g_child (id) ON DELETE SET NULL,
    val     integer,
    tags    text[] NOT NULL DEFAULT '{}',
    doc     jsonb
);
CREATE TABLE public.g_grand (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    child_id uuid NOT NULL REFERENCES public.g_child (id) ON DELETE CASCADE,
    note     text,
    at       timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00'
);
CREATE TABLE public.g_link (
    a_id   uuid NOT NULL REFERENCES public.g_child (id) ON DELETE CASCADE,
    b_id   uuid NOT NULL REFERENCES public.g_child (id) ON DELETE CASCADE,
    weight integer NOT NULL DEFAULT 1,
    PRIMARY KEY (a_id, b_id)
);
CREATE TABLE public.g_note (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid REFERENCES public.tenants (id) ON DELETE SET NULL,
    about       text,
    about_code  text,
    about_child uuid,
    about_grand text,
    link_a      uuid,
    link_b      uuid,
    by_user     uuid REFERENCES public.user_profiles (id) ON DELETE SET NULL,
    body        text NOT NULL,
    FOREIGN KEY (link_a, link_b) REFERENCES public.g_link (a_id, b_id) ON DELETE CASCADE
);
INSERT INTO public.simulation_table_config
    (table_name, category, has_tenant_id, parent_table, parent_column)
VALUES ('g_root', 'core', true, NULL, NULL),
       ('g_child', 'parts', false, 'g_root', 'root_id'),
       ('g_grand', 'parts', false, 'g_child', 'child_id'),
       ('g_link', 'links', false, 'g_child', 'a_id'),
       ('g_note', 'notes', true, NULL, NULL);
INSERT INTO public.tenants (id, name) VALUES
    ('a0000000-0000-4000-8000-000000000000', 'A source'),
    ('b0000000-0000-4000-8000-000000000000', 'B other'),
    ('c0000000-0000-4000-8000-000000000000', 'C empty'),
    ('d0000000-0000-4000-8000-000000000000', 'D empty');
INSERT INTO public.user_profiles (id, full_name, role) VALUES
    ('e0000000-0000-4000-8000-000000000000', 'Ann', 'instructor'),
    ('e0000000-0000-4000-8000-000000000001', 'Bob', 'student'),
    ('e0000000-0000-4000-8000-000000000002', 'Cy', 'student');
