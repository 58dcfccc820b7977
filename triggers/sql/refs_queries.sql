-- Named queries behind `simtrail config ref` and `simtrail config rule`.

-- name: relation_exists
SELECT pg_catalog.to_regclass(%(name)s) IS NOT NULL AS present

-- name: ref_add
SELECT simtrail.add_reference(%(table)s, %(column)s, %(ref_table)s, %(ref_column)s) AS result

-- name: ref_remove
SELECT simtrail.remove_reference(%(table)s, %(column)s) AS result

-- name: ref_list
SELECT p.table_name, p.column_name, p.ref_table, p.ref_column, r.added_at, r.added_by, p.problem
FROM simtrail.declared_reference_problems() AS p
JOIN simtrail.refs AS r ON r.table_name = p.table_name AND r.column_name = p.column_name
ORDER BY p.table_name, p.column_name

-- name: ref_candidates
SELECT table_name, column_name, ref_table, ref_column, key, as_text, distinct_values, command
FROM simtrail.reference_candidates()
ORDER BY table_name, column_name

-- name: rule_set
SELECT simtrail.set_copy_rule(%(table)s, %(column)s, %(rule)s) AS result

-- name: rule_remove
SELECT simtrail.remove_copy_rule(%(table)s, %(column)s) AS result

-- name: rule_list
SELECT p.table_name, p.column_name,
       CASE WHEN p.rule = 'sql' THEN 'sql:' || p.expression ELSE p.rule END AS on_copy,
       r.set_at, r.set_by, p.problem
FROM simtrail.copy_rule_problems() AS p
JOIN simtrail.copy_rules AS r ON r.table_name = p.table_name AND r.column_name = p.column_name
ORDER BY p.table_name, p.column_name
