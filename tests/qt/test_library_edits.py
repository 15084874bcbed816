"""The library service behind Delete / Undo and the output editor, without windows: what a delete plans and
does (a prompt takes its outputs), that it is all or nothing, that Undo restores exactly that, and that an
output edit writes only the fields changed in the editor."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from outputhub.common.errors import InvalidInputError
from outputhub.desktop.services.editing import make_editor
from outputhub.desktop.services.library import LibraryService
from outputhub.desktop.storage import Replica
from outputhub.sync.client import LocalLibrary
from tests.qt.support import library_for, seed


class FailingEditor:
    """A ``LocalLibrary`` whose ``fail_at``-th delete fails (as a full disk would)."""

    def __init__(self, inner: LocalLibrary, *, fail_at: int) -> None:
        self._inner = inner
        self._deletes = 0
        self._fail_at = fail_at

    def create(self, entity: str, values: Mapping[str, Any], *, id: str | None = None) -> str:
        return self._inner.create(entity, values, id=id)

    def edit(
        self,
        entity: str,
        record_id: str,
        values: Mapping[str, Any],
        *,
        seen: Mapping[str, Any] | None = None,
        unlink: bool = False,
    ) -> bool:
        return self._inner.edit(entity, record_id, values, seen=seen, unlink=unlink)

    def delete(self, entity: str, record_id: str) -> None:
        self._deletes += 1
        if self._deletes == self._fail_at:
            raise OSError("disk full")
        self._inner.delete(entity, record_id)

    def restore(self, entity: str, record_id: str) -> None:
        self._inner.restore(entity, record_id)

    def resolve_conflict(self, entity: str, record_id: str, conflict_id: str, choice: Any) -> None:
        self._inner.resolve_conflict(entity, record_id, conflict_id, choice)


def service(replica: Replica) -> LibraryService:
    return LibraryService(replica=replica, editor=make_editor(replica))


def test_a_prompt_is_deleted_with_its_outputs_and_undo_restores_exactly_those(replica) -> None:
    ids = seed(replica, outputs=3)
    library = service(replica)
    library_for(replica).delete("output", ids["output2"])  # deleted before: not part of this delete
    plan = library.plan_deletion(entity="prompt", ids=[ids["prompt"], ids["prompt"]])
    assert (plan.ids, plan.labels, plan.outputs_deleted_too) == ((ids["prompt"],), ("Linux Terminal",), 2)

    deletion = library.delete_records(entity="prompt", ids=plan.ids)
    assert deletion.records == (
        ("output", ids["output0"]),
        ("output", ids["output1"]),
        ("prompt", ids["prompt"]),
    ), "the outputs first, then the prompt"
    assert deletion.entities == {"prompt", "output"}
    assert [p.title for p in replica.list_prompts()] == ["SQL tutor"]
    assert [o.id for o in replica.list_outputs(limit=100)] == [ids["sql_output"]]

    # a sync brought one output back meanwhile: Undo leaves it alone and restores the rest
    library_for(replica).restore("output", ids["output1"])
    assert library.restore_records(deletion=deletion) == 2
    assert not replica.get_prompt(id=ids["prompt"]).deleted
    assert {o.id for o in replica.list_outputs(limit=100)} == {
        ids["output0"],
        ids["output1"],
        ids["sql_output"],
    }
    assert replica.get_output(id=ids["output2"]).deleted, "deleted earlier, not by this delete: stays deleted"
    assert library.restore_records(deletion=deletion) == 0, "undoing twice changes nothing"


def test_a_custom_gpt_delete_counts_the_outputs_that_keep_its_name(replica) -> None:
    ids = seed(replica)
    library = service(replica)
    plan = library.plan_deletion(entity="custom_gpt", ids=[ids["gpt"]])
    assert (plan.labels, plan.outputs_linked, plan.outputs_deleted_too) == (("Coder",), 1, 0)
    deletion = library.delete_records(entity="custom_gpt", ids=[ids["gpt"]])
    assert deletion.records == (("custom_gpt", ids["gpt"]),)
    assert not replica.get_output(id=ids["sql_output"]).deleted


def test_a_delete_is_all_or_nothing(replica) -> None:
    ids = seed(replica, outputs=3)
    library = LibraryService(replica=replica, editor=FailingEditor(library_for(replica), fail_at=3))
    outbox = len(replica.pending_outbox(limit=10_000))
    with pytest.raises(OSError, match="disk full"):
        library.delete_records(entity="output", ids=[ids["output0"], ids["output1"], ids["output2"]])
    assert not any(replica.get_output(id=ids[f"output{i}"]).deleted for i in range(3))
    assert len(replica.pending_outbox(limit=10_000)) == outbox, "no tombstone queued either"


def test_nothing_live_to_delete_is_said_in_words(replica) -> None:
    ids = seed(replica)
    library = service(replica)
    library.delete_records(entity="output", ids=[ids["output0"]])
    with pytest.raises(InvalidInputError, match="already deleted"):
        library.plan_deletion(entity="output", ids=[ids["output0"], str(uuid.uuid4())])
    with pytest.raises(InvalidInputError, match="cannot delete"):
        library.plan_deletion(entity="prompt_version", ids=[ids["prompt"]])


def test_linked_output_ids_are_found_across_many_ids(replica) -> None:
    ids = seed(replica, outputs=2)
    many = [str(uuid.uuid4()) for _ in range(1200)] + [ids["prompt"]]  # more than one IN (...) chunk
    assert replica.live_output_ids(link="prompt_id", ids=many) == [ids["output0"], ids["output1"]]
    with pytest.raises(ValueError, match="not linked by"):
        replica.live_output_ids(link="content", ids=many)


def test_an_output_edit_writes_the_changed_fields_and_merges_sets_with_edits_made_meanwhile(replica) -> None:
    ids = seed(replica)
    library = service(replica)
    original = library.get_output(id=ids["output0"])
    # another device's edit arrives while the editor is open: a tag added, the notes changed
    library_for(replica).edit(
        "output", ids["output0"], {"tag_ids": {ids["tag_python"], ids["tag_sql"]}, "notes": "laptop"}
    )
    outbox = len(replica.pending_outbox(limit=10_000))
    unchanged = {
        "content": original.content,
        "prompt_id": original.prompt_id,
        "custom_gpt_id": original.custom_gpt_id,
        "gpt_model_id": original.gpt_model_id,
        "accuracy_level_id": original.accuracy_level_id,
        "knowledge_type_ids": original.knowledge_type_ids,
        "tag_ids": original.tag_ids,
        "notes": original.notes,
    }
    assert not library.update_output(id=ids["output0"], original=original, **unchanged)
    assert len(replica.pending_outbox(limit=10_000)) == outbox, (
        "nothing changed in the editor: nothing written"
    )

    changed = {**unchanged, "tag_ids": (), "knowledge_type_ids": (ids["code"],), "gpt_model_id": None}
    assert library.update_output(id=ids["output0"], original=original, **changed)
    record = replica.get_output(id=ids["output0"])
    assert record.tag_ids == (ids["tag_sql"],), "python removed here; sql (added elsewhere) kept"
    assert record.knowledge_type_ids == (ids["code"],) and record.gpt_model_id is None
    assert record.notes == "laptop"
    [entry] = replica.pending_outbox(limit=10_000)[outbox:]
    assert set(entry.payload["values"]) == {"tag_ids", "knowledge_type_ids", "gpt_model_id"}


def test_an_output_edit_is_refused_in_words(replica) -> None:
    ids = seed(replica)
    library = service(replica)
    original = library.get_output(id=ids["output0"])
    values = {"content": "x", "prompt_id": original.prompt_id}
    with pytest.raises(InvalidInputError, match="the output is empty"):
        library.update_output(id=original.id, original=original, **{**values, "content": "  "})
    with pytest.raises(InvalidInputError, match="choose the prompt"):
        library.update_output(id=original.id, original=original, **{**values, "prompt_id": None})
    library.delete_records(entity="output", ids=[original.id])
    with pytest.raises(InvalidInputError, match="deleted meanwhile"):
        library.update_output(id=original.id, original=original, **values)
