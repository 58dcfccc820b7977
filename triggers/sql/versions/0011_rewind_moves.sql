-- simtrail schema, version 11: a rewind's work rows say how each row changed
-- tenant after the target ("entered" from a tenant or from none, "left"), so
-- rows that moved in are sent back or refused instead of deleted.

ALTER TABLE simtrail.rewind_keys ADD COLUMN moves jsonb;
ALTER TABLE simtrail.rewind_net ADD COLUMN moves jsonb;
