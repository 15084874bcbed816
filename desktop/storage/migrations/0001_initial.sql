-- 0001: the initial replica schema.
--
-- Every replicated table has an INTEGER PRIMARY KEY `seq` (local only: a stable rowid for the external-content
-- FTS indexes, which VACUUM would otherwise be free to renumber) and the client-generated UUID `id` as its
-- identity. References between entities carry no foreign keys: rows arrive from the server in any order and
-- tombstoned targets stay referenced. Link tables belong to their owner row and cascade with it.
-- Timestamps are UTC ISO-8601 text; JSON columns are checked with json_valid().

-- lookups ---------------------------------------------------------------------------------------------

CREATE TABLE tags (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE CHECK (length(id) = 36),
    org_id TEXT NOT NULL,
    revision INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    local_status TEXT NOT NULL DEFAULT 'created'
        CHECK (local_status IN ('created', 'updated', 'deleted', 'synced')),
    base TEXT CHECK (base IS NULL OR json_valid(base)),
    field_clocks TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(field_clocks)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    updated_by TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    position INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tags_org_updated ON tags (org_id, updated_at);
CREATE INDEX tags_revision ON tags (revision);
CREATE INDEX tags_pending ON tags (local_status) WHERE local_status <> 'synced';

CREATE TABLE knowledge_types (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE CHECK (length(id) = 36),
    org_id TEXT NOT NULL,
    revision INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    local_status TEXT NOT NULL DEFAULT 'created'
        CHECK (local_status IN ('created', 'updated', 'deleted', 'synced')),
    base TEXT CHECK (base IS NULL OR json_valid(base)),
    field_clocks TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(field_clocks)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    updated_by TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    position INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX knowledge_types_org_updated ON knowledge_types (org_id, updated_at);
CREATE INDEX knowledge_types_revision ON knowledge_types (revision);
CREATE INDEX knowledge_types_pending ON knowledge_types (local_status) WHERE local_status <> 'synced';

CREATE TABLE accuracy_levels (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE CHECK (length(id) = 36),
    org_id TEXT NOT NULL,
    revision INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    local_status TEXT NOT NULL DEFAULT 'created'
        CHECK (local_status IN ('created', 'updated', 'deleted', 'synced')),
    base TEXT CHECK (base IS NULL OR json_valid(base)),
    field_clocks TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(field_clocks)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    updated_by TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    position INTEGER NOT NULL DEFAULT 0,
    score INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX accuracy_levels_org_updated ON accuracy_levels (org_id, updated_at);
CREATE INDEX accuracy_levels_revision ON accuracy_levels (revision);
CREATE INDEX accuracy_levels_pending ON accuracy_levels (local_status) WHERE local_status <> 'synced';

CREATE TABLE development_stages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE CHECK (length(id) = 36),
    org_id TEXT NOT NULL,
    revision INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    local_status TEXT NOT NULL DEFAULT 'created'
        CHECK (local_status IN ('created', 'updated', 'deleted', 'synced')),
    base TEXT CHECK (base IS NULL OR json_valid(base)),
    field_clocks TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(field_clocks)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    updated_by TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    position INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX development_stages_org_updated ON development_stages (org_id, updated_at);
CREATE INDEX development_stages_revision ON development_stages (revision);
CREATE INDEX development_stages_pending ON development_stages (local_status) WHERE local_status <> 'synced';

CREATE TABLE gpt_models (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE CHECK (length(id) = 36),
    org_id TEXT NOT NULL,
    revision INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    local_status TEXT NOT NULL DEFAULT 'created'
        CHECK (local_status IN ('created', 'updated', 'deleted', 'synced')),
    base TEXT CHECK (base IS NULL OR json_valid(base)),
    field_clocks TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(field_clocks)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    updated_by TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    position INTEGER NOT NULL DEFAULT 0,
    provider TEXT NOT NULL DEFAULT ''
);
CREATE INDEX gpt_models_org_updated ON gpt_models (org_id, updated_at);
CREATE INDEX gpt_models_revision ON gpt_models (revision);
CREATE INDEX gpt_models_pending ON gpt_models (local_status) WHERE local_status <> 'synced';

CREATE TABLE agent_groups (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE CHECK (length(id) = 36),
    org_id TEXT NOT NULL,
    revision INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    local_status TEXT NOT NULL DEFAULT 'created'
        CHECK (local_status IN ('created', 'updated', 'deleted', 'synced')),
    base TEXT CHECK (base IS NULL OR json_valid(base)),
    field_clocks TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(field_clocks)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    updated_by TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    position INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX agent_groups_org_updated ON agent_groups (org_id, updated_at);
CREATE INDEX agent_groups_revision ON agent_groups (revision);
CREATE INDEX agent_groups_pending ON agent_groups (local_status) WHERE local_status <> 'synced';

-- custom GPTs -----------------------------------------------------------------------------------------

CREATE TABLE custom_gpts (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE CHECK (length(id) = 36),
    org_id TEXT NOT NULL,
    revision INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    local_status TEXT NOT NULL DEFAULT 'created'
        CHECK (local_status IN ('created', 'updated', 'deleted', 'synced')),
    base TEXT CHECK (base IS NULL OR json_valid(base)),
    field_clocks TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(field_clocks)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    updated_by TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    instructions TEXT NOT NULL DEFAULT '',
    gpt_model_id TEXT
);
CREATE INDEX custom_gpts_org_updated ON custom_gpts (org_id, updated_at);
CREATE INDEX custom_gpts_revision ON custom_gpts (revision);
CREATE INDEX custom_gpts_pending ON custom_gpts (local_status) WHERE local_status <> 'synced';

CREATE TABLE custom_gpt_agent_groups (
    custom_gpt_id TEXT NOT NULL REFERENCES custom_gpts (id) ON DELETE CASCADE,
    agent_group_id TEXT NOT NULL,
    PRIMARY KEY (custom_gpt_id, agent_group_id)
) WITHOUT ROWID;
CREATE INDEX custom_gpt_agent_groups_agent_group_id ON custom_gpt_agent_groups (agent_group_id);

-- prompts ---------------------------------------------------------------------------------------------

CREATE TABLE prompts (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE CHECK (length(id) = 36),
    org_id TEXT NOT NULL,
    revision INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    local_status TEXT NOT NULL DEFAULT 'created'
        CHECK (local_status IN ('created', 'updated', 'deleted', 'synced')),
    base TEXT CHECK (base IS NULL OR json_valid(base)),
    field_clocks TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(field_clocks)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    updated_by TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    development_stage_id TEXT,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX prompts_org_updated ON prompts (org_id, updated_at);
CREATE INDEX prompts_revision ON prompts (revision);
CREATE INDEX prompts_pending ON prompts (local_status) WHERE local_status <> 'synced';

CREATE INDEX prompts_development_stage ON prompts (development_stage_id);
CREATE INDEX prompts_updated ON prompts (updated_at);

CREATE TABLE prompt_tags (
    prompt_id TEXT NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
    tag_id TEXT NOT NULL,
    PRIMARY KEY (prompt_id, tag_id)
) WITHOUT ROWID;
CREATE INDEX prompt_tags_tag_id ON prompt_tags (tag_id);

CREATE TABLE prompt_versions (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE CHECK (length(id) = 36),
    org_id TEXT NOT NULL,
    revision INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    local_status TEXT NOT NULL DEFAULT 'created'
        CHECK (local_status IN ('created', 'updated', 'deleted', 'synced')),
    base TEXT CHECK (base IS NULL OR json_valid(base)),
    field_clocks TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(field_clocks)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    updated_by TEXT NOT NULL DEFAULT '',
    prompt_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX prompt_versions_org_updated ON prompt_versions (org_id, updated_at);
CREATE INDEX prompt_versions_revision ON prompt_versions (revision);
CREATE INDEX prompt_versions_pending ON prompt_versions (local_status) WHERE local_status <> 'synced';

CREATE UNIQUE INDEX prompt_versions_prompt_version ON prompt_versions (prompt_id, version);

-- outputs ---------------------------------------------------------------------------------------------

CREATE TABLE outputs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE CHECK (length(id) = 36),
    org_id TEXT NOT NULL,
    revision INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    local_status TEXT NOT NULL DEFAULT 'created'
        CHECK (local_status IN ('created', 'updated', 'deleted', 'synced')),
    base TEXT CHECK (base IS NULL OR json_valid(base)),
    field_clocks TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(field_clocks)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    updated_by TEXT NOT NULL DEFAULT '',
    prompt_id TEXT NOT NULL,
    content TEXT NOT NULL,
    notes TEXT NOT NULL DEFAULT '',
    custom_gpt_id TEXT,
    gpt_model_id TEXT,
    accuracy_level_id TEXT,
    produced_at TEXT
);
CREATE INDEX outputs_org_updated ON outputs (org_id, updated_at);
CREATE INDEX outputs_revision ON outputs (revision);
CREATE INDEX outputs_pending ON outputs (local_status) WHERE local_status <> 'synced';

CREATE INDEX outputs_prompt ON outputs (prompt_id);
CREATE INDEX outputs_updated ON outputs (updated_at);

CREATE TABLE output_tags (
    output_id TEXT NOT NULL REFERENCES outputs (id) ON DELETE CASCADE,
    tag_id TEXT NOT NULL,
    PRIMARY KEY (output_id, tag_id)
) WITHOUT ROWID;
CREATE INDEX output_tags_tag_id ON output_tags (tag_id);

CREATE TABLE output_knowledge_types (
    output_id TEXT NOT NULL REFERENCES outputs (id) ON DELETE CASCADE,
    knowledge_type_id TEXT NOT NULL,
    PRIMARY KEY (output_id, knowledge_type_id)
) WITHOUT ROWID;
CREATE INDEX output_knowledge_types_knowledge_type_id ON output_knowledge_types (knowledge_type_id);

-- full-text search (external content: the text lives once, in prompts/outputs) -------------------------
CREATE VIRTUAL TABLE prompts_fts USING fts5 (
    title, body, content = 'prompts', content_rowid = 'seq', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER prompts_fts_insert AFTER INSERT ON prompts BEGIN
    INSERT INTO prompts_fts (rowid, title, body) VALUES (new.seq, new.title, new.body);
END;
CREATE TRIGGER prompts_fts_delete AFTER DELETE ON prompts BEGIN
    INSERT INTO prompts_fts (prompts_fts, rowid, title, body) VALUES ('delete', old.seq, old.title, old.body);
END;
-- only when the indexed text changes: sync bookkeeping (revision, status) does not re-index
CREATE TRIGGER prompts_fts_update AFTER UPDATE OF title, body ON prompts
WHEN old.title IS NOT new.title OR old.body IS NOT new.body BEGIN
    INSERT INTO prompts_fts (prompts_fts, rowid, title, body) VALUES ('delete', old.seq, old.title, old.body);
    INSERT INTO prompts_fts (rowid, title, body) VALUES (new.seq, new.title, new.body);
END;

CREATE VIRTUAL TABLE outputs_fts USING fts5 (
    content, content = 'outputs', content_rowid = 'seq', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER outputs_fts_insert AFTER INSERT ON outputs BEGIN
    INSERT INTO outputs_fts (rowid, content) VALUES (new.seq, new.content);
END;
CREATE TRIGGER outputs_fts_delete AFTER DELETE ON outputs BEGIN
    INSERT INTO outputs_fts (outputs_fts, rowid, content) VALUES ('delete', old.seq, old.content);
END;
CREATE TRIGGER outputs_fts_update AFTER UPDATE OF content ON outputs
WHEN old.content IS NOT new.content BEGIN
    INSERT INTO outputs_fts (outputs_fts, rowid, content) VALUES ('delete', old.seq, old.content);
    INSERT INTO outputs_fts (rowid, content) VALUES (new.seq, new.content);
END;

-- sync bookkeeping ------------------------------------------------------------------------------------
-- key/value facts about this replica (node_id: this installation's id in hybrid logical clocks)
CREATE TABLE replica_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE sync_state (
    server_url TEXT NOT NULL,
    org_id TEXT NOT NULL,
    cursor TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (server_url, org_id)
) WITHOUT ROWID;

-- durable pushes: an edit and its outbox entry are written in one transaction
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id TEXT NOT NULL UNIQUE,
    entity TEXT NOT NULL,
    record_id TEXT NOT NULL,
    payload TEXT NOT NULL CHECK (json_valid(payload)),
    base_revision INTEGER,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX outbox_record ON outbox (entity, record_id);

CREATE TABLE conflicts (
    id TEXT PRIMARY KEY,
    entity TEXT NOT NULL,
    record_id TEXT NOT NULL,
    field TEXT NOT NULL,
    base TEXT CHECK (base IS NULL OR json_valid(base)),
    mine TEXT CHECK (mine IS NULL OR json_valid(mine)),
    theirs TEXT CHECK (theirs IS NULL OR json_valid(theirs)),
    created_at TEXT NOT NULL,
    resolved_at TEXT
) WITHOUT ROWID;
CREATE INDEX conflicts_open ON conflicts (entity, record_id) WHERE resolved_at IS NULL;
