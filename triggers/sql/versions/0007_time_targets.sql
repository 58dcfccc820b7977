-- simtrail schema, version 7: what a time target needs to know how exact it is.

-- How soon after this tick the daemon promised the next one (its tick
-- interval plus room for a cycle's other work). A time up to this long
-- after the tick resolves to it "exact to the tick"; a longer gap is an
-- outage, and a time inside it is refused. NULL: nothing was promised (a
-- tick taken by hand, or by a daemon older than this version).
ALTER TABLE simtrail.ticks ADD COLUMN promise interval;

-- Where the daemon thinned the ticks: before `thinned_before` only one tick
-- per `coarse_every` is kept (hourly by default), and a time there resolves
-- to that coarse tick, which the report says.
ALTER TABLE simtrail.daemon_state ADD COLUMN thinned_before timestamptz;
ALTER TABLE simtrail.daemon_state ADD COLUMN coarse_every interval;

-- These take a `nearest` argument now; the old signatures would make calls
-- with the old arguments ambiguous.
DROP FUNCTION IF EXISTS simtrail.resolve_target(text, text);
DROP FUNCTION IF EXISTS simtrail.rewind_plan(text, text, boolean);

REVOKE ALL ON ALL TABLES IN SCHEMA simtrail FROM PUBLIC;
