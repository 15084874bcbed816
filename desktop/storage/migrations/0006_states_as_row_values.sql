-- 0006: merge states may be stored as their row's values.
--
-- From this version a state written by one operation whose every field holds its column's value is stored
-- in `field_clocks` as {"state": {"u": [version, op_id], "v": "="}} and read back from the row
-- (desktop/storage/sync_store.py, `imply_values` and `stored_state`; docs/replica.md). Nothing in the schema
-- changes, and states stored in full read as before. The version moves so that an older Output Hub, which
-- cannot read that form, refuses the replica with "update the app to open it" instead of failing at the
-- first sync that merges into such a record.
SELECT 1;
