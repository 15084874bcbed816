"""Seeding a replica through the same LocalLibrary the app uses (edits, outbox and all)."""

from __future__ import annotations

from outputhub.desktop.storage import Replica
from outputhub.desktop.storage.sync_store import ReplicaSyncStore
from outputhub.sync.client import LocalLibrary


def library_for(replica: Replica) -> LocalLibrary:
    return LocalLibrary(ReplicaSyncStore(replica))


def seed(replica: Replica, *, outputs: int = 3) -> dict[str, str]:
    lib = library_for(replica)
    ids: dict[str, str] = {}

    def lookup(entity: str, name: str, position: int = 0) -> str:
        return lib.create(entity, {"name": name, "description": "", "position": position})

    ids["draft"] = lookup("development_stage", "Draft", 0)
    ids["production"] = lookup("development_stage", "Production", 2)
    ids["tag_python"] = lookup("tag", "python")
    ids["tag_sql"] = lookup("tag", "sql")
    ids["model"] = lookup("gpt_model", "GPT-4o")
    ids["accurate"] = lookup("accuracy_level", "Accurate")
    ids["wrong"] = lookup("accuracy_level", "Wrong", 3)
    ids["code"] = lookup("knowledge_type", "Code")
    ids["group"] = lookup("agent_group", "General")
    ids["gpt"] = lib.create(
        "custom_gpt", {"name": "Coder", "gpt_model_id": ids["model"], "agent_group_ids": {ids["group"]}}
    )
    ids["prompt"] = lib.create(
        "prompt",
        {
            "title": "Linux Terminal",
            "body": "act as a terminal\nreply with output only",
            "development_stage_id": ids["draft"],
            "tag_ids": {ids["tag_python"]},
        },
    )
    ids["other_prompt"] = lib.create(
        "prompt",
        {"title": "SQL tutor", "body": "explain this query", "development_stage_id": ids["production"]},
    )
    for i in range(outputs):
        ids[f"output{i}"] = lib.create(
            "output",
            {
                "prompt_id": ids["prompt"],
                "content": f"terminal answer number {i}",
                "gpt_model_id": ids["model"],
                "accuracy_level_id": ids["accurate"] if i % 2 == 0 else ids["wrong"],
                "tag_ids": {ids["tag_python"]},
            },
        )
    ids["sql_output"] = lib.create(
        "output",
        {"prompt_id": ids["other_prompt"], "content": "SELECT explained", "custom_gpt_id": ids["gpt"]},
    )
    return ids
