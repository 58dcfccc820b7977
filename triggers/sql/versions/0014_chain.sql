-- simtrail schema, version 14: per-tenant hash chains over every original
-- change, and one chain of records (checkpoints, prunes, exports) over them.
-- docs/CHAIN.md specifies the encoding an auditor re-implements.

-- The key of every column commitment's salt. Made here, never leaves the
-- database except through the owner's export: with it, anyone could test
-- guesses against a redacted column's commitment.
CREATE TABLE simtrail.seal_secret (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    secret    bytea NOT NULL CHECK (pg_catalog.length(secret) = 32)
);
-- gen_random_uuid draws from the server's strong random source; two of them
-- carry 244 random bits, hashed down to the 32 bytes kept.
INSERT INTO simtrail.seal_secret (secret)
SELECT pg_catalog.sha256(pg_catalog.convert_to(
    pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text, 'UTF8'));

-- One row per original change (a log row with net_count NULL, or an archive
-- row): its place in its tenant's chain and the chain's hash up to it.
-- A net change of compaction reuses the id of its last original, which is in
-- the archive then, so a change_id names one original.
CREATE TABLE simtrail.seals (
    change_id  bigint PRIMARY KEY,
    tenant_id  text,
    seq        bigint NOT NULL CHECK (seq > 0),
    hash       bytea NOT NULL,
    changed_at timestamptz NOT NULL,
    UNIQUE NULLS NOT DISTINCT (tenant_id, seq)
);

-- The last seal of each chain. Outlives the seals retention drops, so a
-- chain continues from it.
CREATE TABLE simtrail.chain_heads (
    tenant_id text,
    seq       bigint NOT NULL,
    hash      bytea NOT NULL,
    UNIQUE NULLS NOT DISTINCT (tenant_id)
);

-- Checkpoints (every chain's head after a seal), prunes (what retention
-- dropped, written before it drops) and exports, each hashed over the one
-- before it. The signature covers the 32-byte hash and is not part of it.
CREATE TABLE simtrail.chain_records (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind      text NOT NULL CHECK (kind IN ('checkpoint', 'prune', 'export')),
    at        timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    body      jsonb NOT NULL,
    prev_hash bytea NOT NULL,
    hash      bytea NOT NULL,
    signature bytea,
    key_id    text
);

-- How far sealing has got. Every original of this generation whose
-- transaction id is below xid_lo is sealed; while a pass is under way
-- (xid_hi set) so is every one below xid_hi with an id below next_id.
-- A pass over [xid_lo, xid_hi) reads the log in id order from next_id, so a
-- backlog is read once whatever the batch size. generation NULL: the
-- current generation's log and the archive have not been swept yet (a first
-- install over an existing log, or a restored cluster); sweeping names the
-- generation whose sweep xid_hi and next_id belong to.
CREATE TABLE simtrail.seal_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation integer,
    sweeping   integer,
    xid_lo     xid8 NOT NULL DEFAULT '0',
    xid_hi     xid8,
    next_id    bigint,
    sealed_at  timestamptz
);
INSERT INTO simtrail.seal_state DEFAULT VALUES;

REVOKE ALL ON ALL TABLES IN SCHEMA simtrail FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA simtrail FROM PUBLIC;
