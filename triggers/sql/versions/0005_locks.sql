-- simtrail schema, version 5: locks that no application role can take.
-- Advisory locks are open to every role, and pg_locks shows every held key
-- to everyone, so any lock keyed by a number could be taken first by an app
-- role to stall a class. These are row locks on tables in schema simtrail,
-- which app roles cannot even see.

-- One row per tenant. A writer holds its tenant's row FOR KEY SHARE from its
-- first captured statement to its commit; a rewind takes it FOR UPDATE. So a
-- rewind and that tenant's writers take turns, and nobody else ever waits.
-- Rows are created on first use and never deleted.
CREATE TABLE simtrail.tenant_locks (
    tenant_id text PRIMARY KEY
);
INSERT INTO simtrail.tenant_locks (tenant_id)
SELECT DISTINCT c.tenant_id FROM simtrail.changes AS c WHERE c.tenant_id IS NOT NULL
UNION SELECT m.tenant_id FROM simtrail.marks AS m;

-- Locks that are not per tenant, one row each: rewinds hold 'compaction'
-- shared and a compaction batch or retention holds it exclusively; 'sync'
-- and 'install' let one installer or daemon at a time change triggers;
-- 'rebase' lets one session at a time start a new generation after a restore.
CREATE TABLE simtrail.locks (
    name text PRIMARY KEY CHECK (name IN ('compaction', 'sync', 'install', 'rebase'))
);
INSERT INTO simtrail.locks (name) VALUES ('compaction'), ('sync'), ('install'), ('rebase');

-- The daemon leader's lease. The leader renews expires_at every loop in a
-- short transaction of its own; a standby takes the lease over once it has
-- expired, or at once when the session that last renewed it is gone (a
-- leader killed outright). Nothing is held open between renewals.
CREATE TABLE simtrail.daemon_lease (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    holder      text,
    holder_pid  integer,
    acquired_at timestamptz,
    renewed_at  timestamptz,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO simtrail.daemon_lease DEFAULT VALUES;

DROP FUNCTION IF EXISTS simtrail.tenant_lock_key(text);
DROP FUNCTION IF EXISTS simtrail.compaction_lock_key();
