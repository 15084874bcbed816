-- 0004: a full pull (a resync after the server purged tombstones past the replica's cursor, or the repair
-- after a failed check) walks every record from revision 0; when it ends, the records the server did not
-- send are dropped (purged there). Which records the walk has seen was kept in memory only, so a walk cut
-- short (the app closed, the connection lost) could not go on from where it stopped: the next sync started
-- it from 0 again, and on a large library one that was often interrupted never ended (found by QA). The
-- walk's records are kept here, page by page with its cursor; `replica_meta` key `full_walk` says a walk is
-- under way (for which server and organization).
CREATE TABLE walk_seen (
    entity TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (entity, id)
) WITHOUT ROWID;
