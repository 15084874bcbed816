-- 0002: small partial indexes of the tombstoned rows of the two searched tables.
--
-- The full-text indexes hold every row, tombstones included (they are external-content tables kept in step
-- by the triggers of 0001, which this migration does not change). A search keeps only live matches; with
-- these indexes it can tell a tombstone from a live row by its seq without reading the row itself (a row is
-- ~1-2 KB of encrypted page; an entry here is a few bytes, and there are usually few). Search uses them with
-- INDEXED BY, so renaming or dropping them means changing desktop/storage/search.py.
CREATE INDEX outputs_tombstones ON outputs (seq) WHERE deleted = 1;
CREATE INDEX prompts_tombstones ON prompts (seq) WHERE deleted = 1;
