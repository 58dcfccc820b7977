-- Reading simulation_table_config and turning each row into a tenant path.
-- Re-applied by every install (CREATE OR REPLACE), after the versioned files.
-- Every function pins search_path to `pg_catalog, pg_temp`: an empty path
-- would search the caller's pg_temp first for types and relations, so a temp
-- domain named `text` or `jsonb` could run the caller's code as our owner.

-- The config rows, each with the table it names resolved to a regclass
-- (NULL when the table does not exist). A bare name means `public`.
CREATE OR REPLACE FUNCTION simtrail.config_rows()
RETURNS TABLE (
    config_id integer,
    table_name text,
    relid regclass,
    problem text,
    enabled boolean,
    has_tenant_id boolean,
    has_patient_id boolean,
    parent_table text,
    parent_column text
)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    v_parts text[];
BEGIN
    FOR r IN SELECT c.* FROM public.simulation_table_config AS c ORDER BY c.table_name LOOP
        config_id := r.id;
        table_name := r.table_name;
        enabled := coalesce(r.enabled, false);
        has_tenant_id := coalesce(r.has_tenant_id, false);
        has_patient_id := coalesce(r.has_patient_id, false);
        parent_table := r.parent_table;
        parent_column := r.parent_column;
        relid := NULL;
        problem := NULL;
        BEGIN
            v_parts := pg_catalog.parse_ident(r.table_name);
        EXCEPTION WHEN invalid_parameter_value OR syntax_error THEN
            v_parts := NULL;
        END;
        IF v_parts IS NULL OR pg_catalog.cardinality(v_parts) NOT IN (1, 2) THEN
            problem := pg_catalog.format('%L is not a valid table name', r.table_name);
        ELSE
            IF pg_catalog.cardinality(v_parts) = 1 THEN
                v_parts := ARRAY['public', v_parts[1]];
            END IF;
            relid := pg_catalog.to_regclass(pg_catalog.format('%I.%I', v_parts[1], v_parts[2]));
            IF relid IS NULL THEN
                problem := pg_catalog.format('table %I.%I does not exist', v_parts[1], v_parts[2]);
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- The primary-key columns of a table, in key order; NULL when it has none.
CREATE OR REPLACE FUNCTION simtrail.pk_columns(p_relid regclass)
RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.ord)
    FROM pg_catalog.pg_index AS i
    CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::smallint[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = p_relid AND i.indisprimary
$$;

-- The type of a live column, or NULL when there is no such column.
CREATE OR REPLACE FUNCTION simtrail.column_type(p_relid regclass, p_column text)
RETURNS regtype
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.atttypid::regtype
    FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid = p_relid AND a.attname = p_column AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- How a table reaches its tenant, following the config from table to parent
-- until a table with its own tenant column. Raises a one-line message when the
-- path cannot be resolved; the message names the config row to fix.
--
-- Result: {"tenant_column": "tenant_id", "tenant_type": "uuid",
--          "tenant_table": "public.patients",
--          "hops": [{"column": "patient_id", "parent": "public.patients",
--                    "parent_column": "id"}, ...]}
CREATE OR REPLACE FUNCTION simtrail.tenant_path(p_relid regclass)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_rel regclass := p_relid;
    v_seen regclass[] := ARRAY[]::regclass[];
    v_hops jsonb := '[]';
    v_cfg record;
    v_parent regclass;
    v_parent_name text;
    v_column text;
    v_parent_column text;
    v_parent_pk text[];
    v_type regtype;
BEGIN
    LOOP
        IF v_rel = ANY (v_seen) THEN
            RAISE EXCEPTION 'tenant path of % loops back to %', p_relid, v_rel
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_seen := v_seen || v_rel;

        SELECT * INTO v_cfg FROM simtrail.config_rows() AS c WHERE c.relid = v_rel LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'tenant path of % goes through %, which is not in simulation_table_config',
                p_relid, v_rel USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_rel <> p_relid AND NOT v_cfg.enabled THEN
            RAISE EXCEPTION 'tenant path of % goes through %, which is disabled in simulation_table_config',
                p_relid, v_rel USING ERRCODE = 'invalid_parameter_value';
        END IF;

        IF v_cfg.has_tenant_id THEN
            v_type := simtrail.column_type(v_rel, 'tenant_id');
            IF v_type IS NULL THEN
                RAISE EXCEPTION '% is configured with has_tenant_id but has no tenant_id column', v_rel
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            RETURN pg_catalog.jsonb_build_object(
                'tenant_column', 'tenant_id',
                'tenant_type', v_type::text,
                'tenant_table', v_rel::text,
                'hops', v_hops);
        END IF;

        IF v_cfg.parent_table IS NOT NULL OR v_cfg.parent_column IS NOT NULL THEN
            IF v_cfg.parent_table IS NULL OR v_cfg.parent_column IS NULL THEN
                RAISE EXCEPTION '% needs both parent_table and parent_column to reach its tenant', v_rel
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            v_parent_name := v_cfg.parent_table;
            v_column := v_cfg.parent_column;
        ELSIF v_cfg.has_patient_id THEN
            v_parent_name := 'public.patients';
            v_column := 'patient_id';
        ELSE
            RAISE EXCEPTION '% has no tenant path: set has_tenant_id, has_patient_id, or parent_table and parent_column',
                v_rel USING ERRCODE = 'invalid_parameter_value';
        END IF;

        -- to_regclass returns NULL for a missing table but raises on a malformed
        -- name ('a..b', 'db.schema.table'); either way it is this row to fix.
        BEGIN
            v_parent := pg_catalog.to_regclass(
                CASE WHEN pg_catalog.strpos(v_parent_name, '.') > 0 THEN v_parent_name
                     ELSE 'public.' || pg_catalog.quote_ident(v_parent_name) END);
        EXCEPTION WHEN syntax_error OR invalid_name OR feature_not_supported THEN
            RAISE EXCEPTION 'parent table % of % is not a valid table name', v_parent_name, v_rel
                USING ERRCODE = 'invalid_parameter_value';
        END;
        IF v_parent IS NULL THEN
            RAISE EXCEPTION 'parent table % of % does not exist', v_parent_name, v_rel
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_type := simtrail.column_type(v_rel, v_column);
        IF v_type IS NULL THEN
            RAISE EXCEPTION '% has no column % to reach its parent %', v_rel, v_column, v_parent
                USING ERRCODE = 'invalid_parameter_value';
        END IF;

        -- Prefer the declared foreign key; fall back to the parent's single-column
        -- primary key when the types agree (the relation exists without an FK).
        SELECT a.attname::text INTO v_parent_column
        FROM pg_catalog.pg_constraint AS k
        JOIN pg_catalog.pg_attribute AS ca ON ca.attrelid = k.conrelid AND ca.attnum = k.conkey[1]
        JOIN pg_catalog.pg_attribute AS a ON a.attrelid = k.confrelid AND a.attnum = k.confkey[1]
        WHERE k.contype = 'f' AND k.conrelid = v_rel AND k.confrelid = v_parent
          AND pg_catalog.cardinality(k.conkey) = 1 AND ca.attname = v_column
        LIMIT 1;
        IF v_parent_column IS NULL THEN
            v_parent_pk := simtrail.pk_columns(v_parent);
            IF v_parent_pk IS NOT NULL AND pg_catalog.cardinality(v_parent_pk) = 1
               AND simtrail.column_type(v_parent, v_parent_pk[1]) = v_type THEN
                v_parent_column := v_parent_pk[1];
            ELSE
                RAISE EXCEPTION '%.% (%) has no foreign key to % and does not match its primary key',
                    v_rel, v_column, v_type, v_parent USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END IF;

        v_hops := v_hops || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'column', v_column, 'parent', v_parent::text, 'parent_column', v_parent_column));
        v_rel := v_parent;
    END LOOP;
END
$$;

-- Everything wrong with the enabled config rows, one line per problem.
CREATE OR REPLACE FUNCTION simtrail.config_problems()
RETURNS TABLE (table_name text, problem text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM simtrail.config_rows() AS c WHERE c.enabled LOOP
        table_name := r.table_name;
        IF r.problem IS NOT NULL THEN
            problem := r.problem;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF (SELECT c.relkind FROM pg_catalog.pg_class AS c WHERE c.oid = r.relid) NOT IN ('r', 'p') THEN
            problem := pg_catalog.format('%s is not a table', r.relid);
            RETURN NEXT;
            CONTINUE;
        END IF;
        -- A partition is captured with its partitioned table, under that name.
        IF (SELECT c.relispartition FROM pg_catalog.pg_class AS c WHERE c.oid = r.relid) THEN
            problem := pg_catalog.format('%s is a partition; configure its partitioned table %s instead',
                r.relid, (SELECT pg_catalog.pg_partition_root(r.relid))::regclass);
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF (SELECT pg_catalog.count(*) FROM simtrail.config_rows() AS c WHERE c.relid = r.relid) > 1 THEN
            problem := pg_catalog.format('%s is listed more than once', r.relid);
            RETURN NEXT;
        END IF;
        -- Attaching capture is ALTER TABLE: only the table's owner (or a
        -- member of its role) may, and simtrail's functions run as their owner.
        IF NOT pg_catalog.pg_has_role(current_user,
                (SELECT c.relowner FROM pg_catalog.pg_class AS c WHERE c.oid = r.relid), 'USAGE') THEN
            problem := pg_catalog.format(
                '%s is owned by %s, so %s (which owns simtrail) cannot attach capture to it;'
                ' make %s its owner or a member of %s',
                r.relid, (SELECT pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class AS c
                          WHERE c.oid = r.relid), current_user, current_user,
                (SELECT pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class AS c
                 WHERE c.oid = r.relid));
            RETURN NEXT;
        END IF;
        IF simtrail.pk_columns(r.relid) IS NULL THEN
            problem := pg_catalog.format('%s has no primary key, so its rows cannot be identified', r.relid);
            RETURN NEXT;
        END IF;
        BEGIN
            PERFORM simtrail.tenant_path(r.relid);
        EXCEPTION WHEN invalid_parameter_value THEN
            problem := SQLERRM;
            RETURN NEXT;
        END;
    END LOOP;
END
$$;


-- The columns of the adopted config table, as `config add` must fill them:
-- `required` ones are NOT NULL with no default (nor identity or generated),
-- so an INSERT that leaves them out fails.
CREATE OR REPLACE FUNCTION simtrail.config_columns()
RETURNS TABLE (column_name text, type text, not_null boolean, has_default boolean,
               is_key boolean, required boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
           a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
           EXISTS (SELECT 1 FROM pg_catalog.pg_index AS i
                   WHERE i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY (i.indkey)),
           a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = ''
    FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid = pg_catalog.to_regclass('public.simulation_table_config')
      AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
$$;

-- Insert one config row from the keys of p_values only, so every column left
-- out takes the table's own default. Returns the row as stored.
CREATE OR REPLACE FUNCTION simtrail.config_insert(p_values jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_columns text;
    v_row jsonb;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%I', c.column_name), ', ')
      INTO v_columns
      FROM simtrail.config_columns() AS c
     WHERE p_values ? c.column_name;
    EXECUTE pg_catalog.format(
        'INSERT INTO public.simulation_table_config AS t (%1$s) SELECT %1$s'
        ' FROM pg_catalog.jsonb_populate_record(NULL::public.simulation_table_config, $1)'
        ' RETURNING pg_catalog.to_jsonb(t.*)', v_columns)
    INTO v_row USING p_values;
    RETURN v_row;
END
$$;
