-- simtrail schema, version 6: windows in which a configured table's writes
-- were not captured (its capture was detached, or its triggers were found
-- missing), so that nothing is lost silently: doctor reports them and a
-- rewind to a point before one's end refuses unless forced.
CREATE TABLE simtrail.capture_gaps (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name text NOT NULL,
    opened_at  timestamptz NOT NULL,
    -- NULL while capture is still detached.
    closed_at  timestamptz,
    reason     text NOT NULL
);
CREATE INDEX capture_gaps_table_idx ON simtrail.capture_gaps (table_name, closed_at);

REVOKE ALL ON ALL TABLES IN SCHEMA simtrail FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA simtrail FROM PUBLIC;
