-- 0003: the full-text index may lag behind its table after a large pull (the search backlog).
--
-- Indexing the text is the largest part of storing a pulled output (about 40% of the replica's own bulk
-- insert on the dev machine), so a large pull stores the rows and leaves their indexing to a catch-up that
-- runs after the sync, in small transactions (Replica.catch_up_search_index). A row of `search_backlog`
-- says: the rows of `tbl` with seq > indexed_upto are NOT in its full-text index; every other row is. No row
-- for a table: all of it is indexed (the usual state).
--
-- The triggers of 0001 are re-created with that rule: an external-content FTS5 index must never be told to
-- delete a row it was not given (it would corrupt the index), so a row above the mark is neither added,
-- removed nor re-indexed by them; the catch-up reads its text as it is when it gets there.
CREATE TABLE search_backlog (
    tbl TEXT PRIMARY KEY CHECK (tbl IN ('prompts', 'outputs')),
    indexed_upto INTEGER NOT NULL
) WITHOUT ROWID;

DROP TRIGGER prompts_fts_insert;
DROP TRIGGER prompts_fts_delete;
DROP TRIGGER prompts_fts_update;
CREATE TRIGGER prompts_fts_insert AFTER INSERT ON prompts
WHEN NOT EXISTS (SELECT 1 FROM search_backlog WHERE tbl = 'prompts' AND indexed_upto < new.seq) BEGIN
    INSERT INTO prompts_fts (rowid, title, body) VALUES (new.seq, new.title, new.body);
END;
CREATE TRIGGER prompts_fts_delete AFTER DELETE ON prompts
WHEN NOT EXISTS (SELECT 1 FROM search_backlog WHERE tbl = 'prompts' AND indexed_upto < old.seq) BEGIN
    INSERT INTO prompts_fts (prompts_fts, rowid, title, body) VALUES ('delete', old.seq, old.title, old.body);
END;
CREATE TRIGGER prompts_fts_update AFTER UPDATE OF title, body ON prompts
WHEN (old.title IS NOT new.title OR old.body IS NOT new.body)
    AND NOT EXISTS (SELECT 1 FROM search_backlog WHERE tbl = 'prompts' AND indexed_upto < old.seq) BEGIN
    INSERT INTO prompts_fts (prompts_fts, rowid, title, body) VALUES ('delete', old.seq, old.title, old.body);
    INSERT INTO prompts_fts (rowid, title, body) VALUES (new.seq, new.title, new.body);
END;

DROP TRIGGER outputs_fts_insert;
DROP TRIGGER outputs_fts_delete;
DROP TRIGGER outputs_fts_update;
CREATE TRIGGER outputs_fts_insert AFTER INSERT ON outputs
WHEN NOT EXISTS (SELECT 1 FROM search_backlog WHERE tbl = 'outputs' AND indexed_upto < new.seq) BEGIN
    INSERT INTO outputs_fts (rowid, content) VALUES (new.seq, new.content);
END;
CREATE TRIGGER outputs_fts_delete AFTER DELETE ON outputs
WHEN NOT EXISTS (SELECT 1 FROM search_backlog WHERE tbl = 'outputs' AND indexed_upto < old.seq) BEGIN
    INSERT INTO outputs_fts (outputs_fts, rowid, content) VALUES ('delete', old.seq, old.content);
END;
CREATE TRIGGER outputs_fts_update AFTER UPDATE OF content ON outputs
WHEN old.content IS NOT new.content
    AND NOT EXISTS (SELECT 1 FROM search_backlog WHERE tbl = 'outputs' AND indexed_upto < old.seq) BEGIN
    INSERT INTO outputs_fts (outputs_fts, rowid, content) VALUES ('delete', old.seq, old.content);
    INSERT INTO outputs_fts (rowid, content) VALUES (new.seq, new.content);
END;
