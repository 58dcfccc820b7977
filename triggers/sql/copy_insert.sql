-- The writing phase of a copy and the checks after it (see copy_phases.sql).
-- Re-applied by every install (CREATE OR REPLACE).

-- Phase B: insert the table's copies, one statement. Returns the rows
-- written and the references remapped. A unique key the copy would
-- duplicate refuses the whole copy in one line.
CREATE OR REPLACE FUNCTION simtrail.copy_phase_insert(p_plan jsonb, p_rel text, p_to text)
RETURNS TABLE (copied bigint, remapped bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_names text;
    v_values text;
    v_outs text;
    v_joins text;
    v_remapped text;
    v_detail text;
    v_constraint text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%I', e ->> 'name'), ', ' ORDER BY o),
           pg_catalog.string_agg(pg_catalog.format('%s AS %I', simtrail.copy_value_sql(e, p_to), 'c' || o),
                                 ', ' ORDER BY o),
           pg_catalog.string_agg(pg_catalog.format('x.%I', 'c' || o), ', ' ORDER BY o)
      INTO v_names, v_values, v_outs
    FROM pg_catalog.jsonb_array_elements(p_plan -> 'columns') WITH ORDINALITY AS u(e, o);
    SELECT coalesce(pg_catalog.string_agg(simtrail.copy_ref_join(r, 's', ''), '' ORDER BY o), ''),
           coalesce(pg_catalog.string_agg(pg_catalog.format(
               '(%I.old_value IS NOT NULL)::integer', r ->> 'alias'), ' + ' ORDER BY o), '0')
      INTO v_joins, v_remapped
    FROM pg_catalog.jsonb_array_elements(p_plan -> 'refs') WITH ORDINALITY AS u(r, o);
    BEGIN
        EXECUTE pg_catalog.format(
            'WITH x AS MATERIALIZED ('
            '    SELECT %1$s, %2$s AS simtrail_remapped'
            '    FROM %3$s AS s%4$s%5$s'
            '), ins AS ('
            '    INSERT INTO %6$s (%7$s) OVERRIDING SYSTEM VALUE SELECT %8$s FROM x RETURNING 1'
            ') SELECT (SELECT pg_catalog.count(*) FROM ins),'
            '         (SELECT coalesce(pg_catalog.sum(x.simtrail_remapped), 0) FROM x)',
            v_values, v_remapped, p_rel, simtrail.copy_key_join(p_plan), v_joins,
            (p_plan ->> 'relid')::oid::regclass, v_names, v_outs)
        INTO copied, remapped;
    EXCEPTION WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL, v_constraint = CONSTRAINT_NAME;
        -- A primary key gets its new value from a default or from the rows
        -- its columns reference; a copy rule cannot be set on it. It stays
        -- the same only when those rows are not copied along.
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint AS c
                   WHERE c.conrelid = (p_plan ->> 'relid')::oid AND c.contype = 'p'
                     AND c.conname = v_constraint) THEN
            RAISE EXCEPTION 'refused: the copy of % would keep its primary key: % (%); its key is made of references to rows this copy does not bring along: copy those rows with it, or copy into another class',
                p_plan ->> 'table', SQLERRM, v_detail USING ERRCODE = 'unique_violation';
        END IF;
        RAISE EXCEPTION 'refused: the copy of % would duplicate a unique value: % (%); set a copy rule on that column',
            p_plan ->> 'table', SQLERRM, v_detail USING ERRCODE = 'unique_violation';
    END;
    RETURN NEXT;
END
$$;

-- Replica mode skipped foreign-key checks: every copied row of the table
-- must find the row each of its foreign keys points at (a kept reference
-- to a user who has since gone, from a state at a target or a document).
CREATE OR REPLACE FUNCTION simtrail.copy_check_foreign_keys(p_plan jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_relid regclass := (p_plan ->> 'relid')::oid::regclass;
    k record;
    v_pk text;
    v_bad bigint;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('c.%I = (m.new_key ->> %L)::%s', e ->> 'name',
                                                   e ->> 'name', e ->> 'type'), ' AND ')
      INTO v_pk
    FROM pg_catalog.jsonb_array_elements(p_plan -> 'columns') AS e WHERE (e ->> 'in_pk')::boolean;
    FOR k IN
        SELECT con.conname, con.confrelid::regclass AS parent,
               (SELECT pg_catalog.string_agg(pg_catalog.format('p.%I = c.%I', pa.attname, ca.attname), ' AND ')
                FROM ROWS FROM (pg_catalog.unnest(con.conkey), pg_catalog.unnest(con.confkey)) AS z(cn, pn)
                JOIN pg_catalog.pg_attribute AS ca ON ca.attrelid = con.conrelid AND ca.attnum = z.cn
                JOIN pg_catalog.pg_attribute AS pa ON pa.attrelid = con.confrelid AND pa.attnum = z.pn)
                   AS match,
               (SELECT pg_catalog.string_agg(pg_catalog.format('c.%I IS NOT NULL', ca.attname), ' AND ')
                FROM pg_catalog.unnest(con.conkey) AS z(cn)
                JOIN pg_catalog.pg_attribute AS ca ON ca.attrelid = con.conrelid AND ca.attnum = z.cn)
                   AS not_null
        FROM pg_catalog.pg_constraint AS con
        WHERE con.contype = 'f' AND con.conrelid = v_relid
        ORDER BY con.conname
    LOOP
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*) FROM simtrail.copy_map AS m JOIN %1$s AS c ON %2$s'
            ' WHERE m.call_id = pg_catalog.pg_current_xact_id() AND m.table_name = %3$L'
            '   AND m.new_key IS NOT NULL AND %4$s'
            '   AND NOT EXISTS (SELECT 1 FROM %5$s AS p WHERE %6$s)',
            v_relid, v_pk, p_plan ->> 'table', k.not_null, k.parent, k.match)
        INTO v_bad;
        IF v_bad > 0 THEN
            RAISE EXCEPTION 'refused: % copied row(s) of % would point at % rows that do not exist (foreign key %)',
                v_bad, p_plan ->> 'table', k.parent, k.conname USING ERRCODE = 'foreign_key_violation';
        END IF;
    END LOOP;
END
$$;
