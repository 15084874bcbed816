-- 0005: drop the (org_id, updated_at) index of every replicated table.
--
-- A replica holds one organization and no query filters by org_id; lists order by updated_at through the
-- <table>_updated index of 0001 (prompts, outputs) or sort the few lookups. The only statement that reads
-- org_id, the first attach's move of offline records into the organization, runs once per replica (the
-- attach skips it when the replica already belongs to that organization). Every insert still kept this
-- index up to date: storing a pulled page of 5,000 outputs wrote 5,000 index entries for nothing. Without it
-- an initial sync of 100k outputs ran 1.02-1.07x faster (docs/benchmarks.md, eighteenth session).
DROP INDEX tags_org_updated;
DROP INDEX knowledge_types_org_updated;
DROP INDEX accuracy_levels_org_updated;
DROP INDEX development_stages_org_updated;
DROP INDEX gpt_models_org_updated;
DROP INDEX agent_groups_org_updated;
DROP INDEX custom_gpts_org_updated;
DROP INDEX prompts_org_updated;
DROP INDEX prompt_versions_org_updated;
DROP INDEX outputs_org_updated;
