"""Query parameters shared by the list endpoints."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

DB_INT_MAX = 2**63 - 1
"""The largest integer a database column holds (SQLite INTEGER, PostgreSQL BIGINT). Every integer path and
query parameter has it (or less) as its upper bound, so a larger one is a 422 naming the parameter, not an
OverflowError from the driver."""

DB_INT4_MAX = 2**31 - 1
"""The largest integer an ``Integer`` column holds on PostgreSQL (int4; SQLite's hold 64 bits): the bound of
a parameter compared with such a column (a prompt's version numbers), so a larger one is a 422 naming it on
every backend, not PostgreSQL's "integer out of range" (a 500)."""

Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=1000, description="next_cursor from the previous page.")]
Text = Annotated[str | None, Query(max_length=200, description="Case-insensitive text to look for.")]

TagFilter = Annotated[
    list[uuid.UUID] | None, Query(alias="tag_id", description="Has every one of these tags.")
]
StageFilter = Annotated[
    list[uuid.UUID] | None,
    Query(alias="development_stage_id", description="At any of these development stages."),
]
AccuracyFilter = Annotated[
    list[uuid.UUID] | None,
    Query(alias="accuracy_level_id", description="Rated at any of these accuracy levels."),
]
KnowledgeFilter = Annotated[
    list[uuid.UUID] | None,
    Query(alias="knowledge_type_id", description="Has every one of these knowledge types."),
]
CustomGptFilter = Annotated[
    list[uuid.UUID] | None, Query(alias="custom_gpt_id", description="Made by any of these custom GPTs.")
]
GptModelFilter = Annotated[
    list[uuid.UUID] | None, Query(alias="gpt_model_id", description="Any of these GPT models.")
]
AgentGroupFilter = Annotated[
    list[uuid.UUID] | None,
    Query(alias="agent_group_id", description="Custom GPT in any of these agent groups."),
]
PromptFilter = Annotated[
    list[uuid.UUID] | None, Query(alias="prompt_id", description="Outputs of any of these prompts.")
]
