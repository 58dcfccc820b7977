-- simtrail schema, version 10: a mark name means one point per tenant.
--
-- Earlier releases accepted a name twice and resolved `mark:NAME` to the
-- newest; the older ones could no longer be reached by name. They are what
-- `mark create --replace` now does away with, so they go the same way here.
DELETE FROM simtrail.marks AS m
USING simtrail.marks AS n
WHERE n.tenant_id = m.tenant_id AND n.name = m.name AND n.id > m.id;

-- Also what makes two concurrent `mark create` of one name safe: the second
-- waits for the first and then fails, instead of both finding the name free.
DROP INDEX simtrail.marks_tenant_name_idx;
ALTER TABLE simtrail.marks ADD CONSTRAINT marks_tenant_name_key UNIQUE (tenant_id, name);
