-- Operators and functions in a schema the caller may create in ({schema}),
-- first on its own search_path: a definer function with a pinned path must
-- never resolve to them.
CREATE FUNCTION {schema}.evil_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    IF current_user <> {victim} THEN
        INSERT INTO public.pwned (what, ran_as) VALUES ('operator', current_user);
    END IF;
    RETURN a OPERATOR(pg_catalog.=) b;
END
$f$;
CREATE FUNCTION {schema}.evil_eq(a jsonb, b jsonb) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    IF current_user <> {victim} THEN
        INSERT INTO public.pwned (what, ran_as) VALUES ('operator', current_user);
    END IF;
    RETURN a OPERATOR(pg_catalog.=) b;
END
$f$;
CREATE FUNCTION {schema}.evil_eq(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    IF current_user <> {victim} THEN
        INSERT INTO public.pwned (what, ran_as) VALUES ('operator', current_user);
    END IF;
    RETURN a OPERATOR(pg_catalog.=) b;
END
$f$;
CREATE FUNCTION {schema}.evil_eq(a xid8, b xid8) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    IF current_user <> {victim} THEN
        INSERT INTO public.pwned (what, ran_as) VALUES ('operator', current_user);
    END IF;
    RETURN a OPERATOR(pg_catalog.=) b;
END
$f$;
CREATE FUNCTION {schema}.evil_cat(a text, b text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    IF current_user <> {victim} THEN
        INSERT INTO public.pwned (what, ran_as) VALUES ('operator', current_user);
    END IF;
    RETURN pg_catalog.textcat(a, b);
END
$f$;
CREATE OPERATOR {schema}.= (LEFTARG = text, RIGHTARG = text, FUNCTION = {schema}.evil_eq);
CREATE OPERATOR {schema}.= (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = {schema}.evil_eq);
CREATE OPERATOR {schema}.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = {schema}.evil_eq);
CREATE OPERATOR {schema}.= (LEFTARG = xid8, RIGHTARG = xid8, FUNCTION = {schema}.evil_eq);
CREATE OPERATOR {schema}.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = {schema}.evil_cat);
CREATE FUNCTION {schema}.format(text) RETURNS text LANGUAGE sql
    AS $f$ SELECT {schema}.evil_cat($1, '') $f$;
CREATE FUNCTION {schema}.count(anyelement) RETURNS bigint LANGUAGE sql
    AS $f$ SELECT pg_catalog.length({schema}.evil_cat('a', 'b'))::bigint $f$;
SELECT pg_catalog.set_config('search_path', {path}, false);
