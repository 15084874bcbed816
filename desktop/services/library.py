"""The library use cases behind the Prompts, Outputs, Custom GPTs and Taxonomy views.

Reads go straight to the replica (``list_*``, ``get_*``, ``search``); writes go through an :class:`Editor`
(``LocalLibrary``), so they reach the outbox. Results are plain frozen rows ready to display (lookup ids
turned into names). No Qt: the views call these through the job runner.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from outputhub.common.errors import InvalidInputError, NotFoundError
from outputhub.common.names import normalize_name
from outputhub.desktop.services.diff import SideBySideRow, side_by_side
from outputhub.desktop.services.editing import LOOKUP_KINDS, Editor, ids
from outputhub.desktop.storage import (
    CustomGptRecord,
    LookupKind,
    LookupRecord,
    MatchCount,
    OutputRecord,
    PromptRecord,
    PromptVersionRecord,
    Replica,
)
from outputhub.desktop.storage.sync_store import ReplicaSyncStore

EXCERPT_CHARS: Final = 160


@dataclass(frozen=True, slots=True)
class Taxonomy:
    """Every live lookup entry, by kind (a small table: read whole)."""

    entries: Mapping[LookupKind, tuple[LookupRecord, ...]]

    def name(self, kind: LookupKind, ident: str | None) -> str:
        if ident is None:
            return ""
        for entry in self.entries.get(kind, ()):
            if entry.id == ident:
                return entry.name
        return "?"

    def names(self, kind: LookupKind, idents: Sequence[str]) -> str:
        return ", ".join(sorted(self.name(kind, i) for i in idents))

    def of(self, kind: LookupKind) -> tuple[LookupRecord, ...]:
        return self.entries.get(kind, ())


@dataclass(frozen=True, slots=True)
class PromptFilter:
    query: str = ""
    development_stage_id: str | None = None
    tag_id: str | None = None


@dataclass(frozen=True, slots=True)
class OutputFilter:
    query: str = ""
    prompt_id: str | None = None
    custom_gpt_id: str | None = None
    gpt_model_id: str | None = None
    accuracy_level_id: str | None = None
    knowledge_type_id: str | None = None
    tag_id: str | None = None


@dataclass(frozen=True, slots=True)
class CustomGptFilter:
    query: str = ""
    agent_group_id: str | None = None


@dataclass(frozen=True, slots=True)
class PromptRow:
    id: str
    title: str
    stage: str
    tags: str
    version: int
    updated_at: datetime
    status: str
    snippet: str = ""


@dataclass(frozen=True, slots=True)
class OutputRow:
    id: str
    excerpt: str
    prompt: str
    gpt_model: str
    custom_gpt: str
    accuracy: str
    knowledge_types: str
    tags: str
    updated_at: datetime
    status: str


@dataclass(frozen=True, slots=True)
class CustomGptRow:
    id: str
    name: str
    gpt_model: str
    agent_groups: str
    updated_at: datetime
    status: str


@dataclass(frozen=True, slots=True)
class LookupRow:
    id: str
    name: str
    description: str
    position: int
    extra: str
    status: str


@dataclass(frozen=True, slots=True)
class PromptDetail:
    prompt: PromptRecord
    versions: tuple[PromptVersionRecord, ...]


@dataclass(frozen=True, slots=True)
class Choice:
    """An entry of a picker: id and label."""

    id: str
    label: str


DELETABLE: Final = ("prompt", "output", "custom_gpt", *LOOKUP_KINDS)
LABEL_CHARS: Final = 60
USER_TABLES: Final = {"prompts": "prompt", "outputs": "output", "custom_gpts": "custom_gpt"}
"""The tables whose records name lookup entries, and their entity names."""


@dataclass(frozen=True, slots=True)
class DeletionPlan:
    """What deleting some records would do, told before doing it (the confirmation)."""

    entity: str
    ids: tuple[str, ...]  # the live ones among those asked for
    labels: tuple[str, ...]  # their titles / names / excerpts, in the same order
    outputs_deleted_too: int = 0  # a prompt's outputs go with it
    outputs_linked: int = 0  # outputs that keep naming a deleted custom GPT
    used_by: tuple[tuple[str, int], ...] = ()  # a lookup entry: (entity, how many name it), which lose it


@dataclass(frozen=True, slots=True)
class Deletion:
    """What a delete did: enough to say so and to undo it."""

    entity: str
    labels: tuple[str, ...]
    records: tuple[tuple[str, str], ...]  # (entity, id) in the order they were deleted
    unlinked: tuple[tuple[str, str, str, str], ...] = ()
    """Lookup entries taken off the records that named them: (entity, id, field, entry id)."""

    @property
    def entities(self) -> frozenset[str]:
        return frozenset(entity for entity, _ in self.records) | {entity for entity, *_ in self.unlinked}

    def unlinked_counts(self) -> tuple[tuple[str, int], ...]:
        """How many records of each entity lost a link, e.g. ``(("prompt", 1), ("output", 3))``."""
        counts: dict[str, set[str]] = {}
        for entity, record_id, _field, _entry in self.unlinked:
            counts.setdefault(entity, set()).add(record_id)
        return tuple((entity, len(ids)) for entity, ids in counts.items())


@dataclass(frozen=True, slots=True)
class OutputDetail:
    """An output with the names of its prompt and custom GPT (also when those have been deleted)."""

    record: OutputRecord
    prompt_title: str
    custom_gpt_name: str


@dataclass(slots=True)
class _TitleCache:
    titles: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _excerpt(text: str, chars: int = EXCERPT_CHARS) -> str:
    head = text[: chars * 4]  # a page of 200 rows: splitting whole outputs cost more than reading them
    flat = " ".join(head.split())
    if len(flat) <= chars and len(head) < len(text):  # mostly blanks so far: look at all of it
        flat = " ".join(text.split())
    return flat if len(flat) <= chars else flat[: chars - 1] + "…"


class LibraryService:
    def __init__(self, *, replica: Replica, editor: Editor) -> None:
        self._replica = replica
        self._editor = editor
        self._titles = _TitleCache()

    # --- taxonomy -----------------------------------------------------------------------------------------

    def taxonomy(self) -> Taxonomy:
        return Taxonomy(
            {kind: tuple(self._replica.list_lookups(kind=kind, limit=100_000)) for kind in LookupKind}
        )

    def lookup_rows(self, *, kind: LookupKind, offset: int = 0, limit: int = 200) -> list[LookupRow]:
        rows = self._replica.list_lookups(kind=kind, limit=limit, offset=offset, order_by="name")
        return [_lookup_row(r) for r in rows]

    def lookup_row(self, *, kind: LookupKind, id: str) -> LookupRow | None:
        """One entry as the taxonomy page lists it; None when it is gone or deleted."""
        record = self._replica.get_lookup(kind=kind, id=id)
        return None if record is None or record.deleted else _lookup_row(record)

    def save_lookup(
        self,
        *,
        kind: LookupKind,
        id: str | None = None,
        name: str,
        description: str = "",
        position: int = 0,
        original: Any = None,
    ) -> str:
        """Create, or write the fields changed since ``original`` (what the editor showed; the stored entry
        when None), so a field a sync changed meanwhile is not written back as it was. The name is stored
        stripped and in Unicode NFC, as REST stores it."""
        name = normalize_name(name)
        if not name:
            raise InvalidInputError("name", "a name is required")
        entity = next(e for e, k in LOOKUP_KINDS.items() if k is kind)
        values = {"name": name, "description": description, "position": position}
        if id is None:
            return self._editor.create(entity, values)
        with self._replica.transaction():
            current = self._replica.get_lookup(kind=kind, id=id)
            changed = _changed_since(entity, id, original, values, current)
            if changed:
                self._editor.edit(entity, id, changed, seen=_seen(original, changed))
        return id

    def delete(self, *, entity: str, id: str) -> None:
        self._editor.delete(entity, id)

    # --- deleting prompts, outputs, custom GPTs and lookup entries (with undo) ------------------------------

    def _live_label(self, entity: str, record_id: str) -> str | None:
        """The record's label, or None when it is missing or already deleted."""
        record: PromptRecord | OutputRecord | CustomGptRecord | LookupRecord | None
        if entity in LOOKUP_KINDS:
            record = self._replica.get_lookup(kind=LOOKUP_KINDS[entity], id=record_id)
            label = record.name if record is not None else ""
        elif entity == "prompt":
            record = self._replica.get_prompt(id=record_id)
            label = record.title if record is not None else ""
        elif entity == "output":
            record = self._replica.get_output(id=record_id)
            label = _excerpt(record.content, LABEL_CHARS) if record is not None else ""
        elif entity == "custom_gpt":
            record = self._replica.get_custom_gpt(id=record_id)
            label = record.name if record is not None else ""
        else:
            raise InvalidInputError("entity", f"cannot delete {entity!r} here; use one of {DELETABLE}")
        return None if record is None or record.deleted else label

    def _live(self, entity: str, ids: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        live = [(i, label) for i in dict.fromkeys(ids) if (label := self._live_label(entity, i)) is not None]
        if not live:
            raise InvalidInputError("id", "nothing to delete: already deleted (by a sync?)")
        return tuple(i for i, _ in live), tuple(label for _, label in live)

    def plan_deletion(self, *, entity: str, ids: Sequence[str]) -> DeletionPlan:
        live_ids, labels = self._live(entity, ids)
        if entity == "prompt":
            outputs = self._replica.live_output_ids(link="prompt_id", ids=live_ids)
            return DeletionPlan(entity, live_ids, labels, outputs_deleted_too=len(outputs))
        if entity == "custom_gpt":
            outputs = self._replica.live_output_ids(link="custom_gpt_id", ids=live_ids)
            return DeletionPlan(entity, live_ids, labels, outputs_linked=len(outputs))
        if entity in LOOKUP_KINDS:
            users = self._replica.live_records_using(kind=LOOKUP_KINDS[entity], ids=live_ids)
            counts: dict[str, set[str]] = {}
            for (table, _field), record_ids in users.items():
                counts.setdefault(USER_TABLES[table], set()).update(record_ids)
            used_by = tuple((e, len(counts[e])) for e in USER_TABLES.values() if e in counts)
            return DeletionPlan(entity, live_ids, labels, used_by=used_by)
        return DeletionPlan(entity, live_ids, labels)

    def _unlink(self, entity: str, entry_ids: Sequence[str]) -> list[tuple[str, str, str, str]]:
        """Take the lookup entries ``entry_ids`` off every live record that names them (edits through the
        editor, so they sync, as the server does when an entry is deleted); returns what was taken off."""
        wanted = set(entry_ids)
        unlinked: list[tuple[str, str, str, str]] = []
        users = self._replica.live_records_using(kind=LOOKUP_KINDS[entity], ids=entry_ids)
        for (table, name), record_ids in users.items():
            user_entity = USER_TABLES[table]
            for record_id in record_ids:
                record = self._record(user_entity, record_id)
                if record is None:
                    continue
                value = getattr(record, name)
                if isinstance(value, tuple):
                    named = wanted & set(value)
                    self._editor.edit(user_entity, record_id, {name: frozenset(value) - named}, unlink=True)
                elif value in wanted:
                    named = {value}
                    self._editor.edit(user_entity, record_id, {name: None}, unlink=True)
                else:
                    continue
                unlinked += [(user_entity, record_id, name, entry) for entry in sorted(named)]
        return unlinked

    def _relink(self, unlinked: Sequence[tuple[str, str, str, str]]) -> None:
        """Put lookup entries back on the records they were taken off (unless the record is gone, or a
        single-valued field has been given another value since)."""
        for entity, record_id, name, entry in unlinked:
            record = self._record(entity, record_id)
            if record is None or record.deleted:
                continue
            value = getattr(record, name)
            # marked as the unlink they undo: putting the entry back is not an edit that brings back a
            # record another replica deleted meanwhile (QA: undoing a tag's delete did)
            if isinstance(value, tuple):
                if entry not in value:
                    self._editor.edit(entity, record_id, {name: frozenset(value) | {entry}}, unlink=True)
            elif value is None:
                self._editor.edit(entity, record_id, {name: entry}, unlink=True)

    def _record(self, entity: str, record_id: str) -> Any:
        if entity in LOOKUP_KINDS:
            return self._replica.get_lookup(kind=LOOKUP_KINDS[entity], id=record_id)
        getters = {
            "prompt": self._replica.get_prompt,
            "output": self._replica.get_output,
            "custom_gpt": self._replica.get_custom_gpt,
        }
        return getters[entity](id=record_id)

    def delete_records(self, *, entity: str, ids: Sequence[str]) -> Deletion:
        """Delete the live records among ``ids`` (a prompt with its outputs) in one transaction: each delete
        goes through ``LocalLibrary`` (a tombstone change in the outbox), so it syncs and can be undone."""
        with self._replica.transaction():
            live_ids, labels = self._live(entity, ids)
            taken, unlinked = self.take_along(entity=entity, ids=live_ids)
            records = taken + [(entity, i) for i in live_ids]
            for record_entity, record_id in records[len(taken) :]:
                self._editor.delete(record_entity, record_id)
        return Deletion(entity, labels, tuple(records), tuple(unlinked))

    def take_along(
        self, *, entity: str, ids: Sequence[str]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, str]]]:
        """What deleting ``ids`` takes with it, done: a prompt's live outputs deleted, a lookup entry taken
        off the live records that name it. Returns the records deleted and the entries taken off. (Used by a
        delete, and by keeping a delete as a conflict's resolution: the server keeps a record alive while
        live records name it.)"""
        deleted: list[tuple[str, str]] = []
        if entity == "prompt":
            deleted = [("output", i) for i in self._replica.live_output_ids(link="prompt_id", ids=ids)]
        unlinked = self._unlink(entity, ids) if entity in LOOKUP_KINDS else []
        for record_entity, record_id in deleted:
            self._editor.delete(record_entity, record_id)
        return deleted, unlinked

    def restore_records(self, *, deletion: Deletion) -> int:
        """Undo a :class:`Deletion` (restores, which sync like any edit); returns how many came back.

        Records that are live again already (a sync restored them) are left alone; lookup entries go back on
        the records they were taken off."""
        restored = 0
        with self._replica.transaction():
            for entity, record_id in reversed(deletion.records):
                record = self._record(entity, record_id)
                if record is not None and record.deleted:
                    self._editor.restore(entity, record_id)
                    restored += 1
            self._relink(deletion.unlinked)
        return restored

    def relink_restored(self, *, entity: str, record_id: str) -> int:
        """After a restore of a lookup entry (``replica restore``, which has no :class:`Deletion` to undo):
        put it back on the live records its delete took it off, where nobody has written that field since,
        as the desktop's Undo does and the server does at the next sync (QA: the tag was restored and on
        none of its records until then). Returns how many records it is back on."""
        unlinked = ReplicaSyncStore(self._replica).taken_off(entity, record_id)
        with self._replica.transaction():
            self._relink(unlinked)
        return len(unlinked)

    def overridden(self, *, deletion: Deletion) -> bool:
        """Whether a record this delete removed is live again: a sync brought an edit made elsewhere that
        beat the delete (kept as a delete conflict). Undo would then restore nothing of it."""
        return any(
            (record := self._record(entity, record_id)) is not None and not record.deleted
            for entity, record_id in deletion.records
        )

    # --- prompts --------------------------------------------------------------------------------------------

    def prompt_title(self, prompt_id: str) -> str:
        with self._titles.lock:
            title = self._titles.titles.get(prompt_id)
        if title is None:
            record = self._replica.get_prompt(id=prompt_id)
            title = record.title if record is not None else "?"
            with self._titles.lock:
                self._titles.titles[prompt_id] = title
        return title

    def forget_titles(self) -> None:
        with self._titles.lock:
            self._titles.titles.clear()

    def _load_titles(self, prompt_ids: Iterable[str]) -> None:
        """Fetch the titles a page of outputs names but the cache lacks, in one query (a page of 200 outputs
        may name 200 prompts: one ``get_prompt`` each cost more than the page itself)."""
        with self._titles.lock:
            missing = [i for i in dict.fromkeys(prompt_ids) if i not in self._titles.titles]
        if missing:
            found = self._replica.prompt_titles(ids=missing)
            with self._titles.lock:
                self._titles.titles.update({i: found.get(i, "?") for i in missing})

    def _prompt_row(self, record: PromptRecord, taxonomy: Taxonomy, snippet: str = "") -> PromptRow:
        return PromptRow(
            record.id,
            record.title,
            taxonomy.name(LookupKind.DEVELOPMENT_STAGES, record.development_stage_id),
            taxonomy.names(LookupKind.TAGS, record.tag_ids),
            record.version,
            record.updated_at,
            record.local_status.value,
            snippet,
        )

    def list_prompts(
        self,
        *,
        filter: PromptFilter,
        order_by: str = "updated_at",
        descending: bool = True,
        offset: int = 0,
        limit: int = 200,
    ) -> list[PromptRow]:
        taxonomy = self.taxonomy()
        if filter.query.strip():  # search order (best or newest first), paged like the plain list
            hits = self._replica.search_prompts(
                filter.query,
                development_stage_id=filter.development_stage_id,
                tag_id=filter.tag_id,
                offset=offset,
                limit=limit,
            )
            snippets = {hit.id: hit.snippet for hit in hits}
            records = self._replica.get_prompts(ids=list(snippets))
            return [self._prompt_row(r, taxonomy, snippets[r.id]) for r in records]
        records = self._replica.list_prompts(
            development_stage_id=filter.development_stage_id,
            tag_id=filter.tag_id,
            order_by=order_by,
            descending=descending,
            offset=offset,
            limit=limit,
        )
        return [self._prompt_row(r, taxonomy) for r in records]

    def count_prompt_matches(self, *, filter: PromptFilter) -> MatchCount | None:
        """How many prompts the search in ``filter`` finds (capped, see :meth:`count_output_matches`)."""
        if not filter.query.strip():
            return None
        return self._replica.count_prompt_matches(
            filter.query, development_stage_id=filter.development_stage_id, tag_id=filter.tag_id
        )

    def prompt_choices(self) -> list[Choice]:
        return [Choice(p.id, p.title) for p in self._replica.list_prompts(order_by="title", limit=100_000)]

    def prompt_detail(self, *, id: str) -> PromptDetail:
        record = self._replica.get_prompt(id=id)
        if record is None:
            raise NotFoundError("prompt", id)
        versions = tuple(self._replica.list_prompt_versions(prompt_id=id, limit=10_000))
        return PromptDetail(record, versions)

    def save_prompt(
        self,
        *,
        id: str | None = None,
        title: str,
        body: str,
        description: str = "",
        development_stage_id: str | None = None,
        tag_ids: Sequence[str] = (),
        original: PromptRecord | None = None,
    ) -> str:
        """Create, or write the fields changed since ``original`` (what the editor showed; the stored prompt
        when None), and only those: a field a sync changed since the editor loaded it keeps the synced
        value, and ticked or unticked tags are added to or taken from the current set."""
        title = title.strip()
        if not title:
            raise InvalidInputError("title", "a title is required")
        if not body.strip():
            raise InvalidInputError("body", "the prompt text is empty")
        values: dict[str, Any] = {
            "title": title,
            "body": body,
            "description": description,
            "development_stage_id": development_stage_id or None,
            "tag_ids": ids(tag_ids),
        }
        if id is None:
            return self._editor.create("prompt", _for_editor(values))
        with self._replica.transaction():
            changed = _changed_since("prompt", id, original, values, self._replica.get_prompt(id=id))
            if changed:
                self._editor.edit("prompt", id, _for_editor(changed), seen=_seen(original, changed))
        if changed:
            with self._titles.lock:
                self._titles.titles.pop(id, None)
        return id

    def diff_versions(self, *, old: PromptVersionRecord, new: PromptVersionRecord) -> list[SideBySideRow]:
        return side_by_side(old.body, new.body)

    # --- outputs ------------------------------------------------------------------------------------------

    def _output_row(self, record: OutputRecord, taxonomy: Taxonomy, custom_gpts: dict[str, str]) -> OutputRow:
        return OutputRow(
            record.id,
            _excerpt(record.content),
            self.prompt_title(record.prompt_id),
            taxonomy.name(LookupKind.GPT_MODELS, record.gpt_model_id),
            custom_gpts.get(record.custom_gpt_id or "", "") if record.custom_gpt_id else "",
            taxonomy.name(LookupKind.ACCURACY_LEVELS, record.accuracy_level_id),
            taxonomy.names(LookupKind.KNOWLEDGE_TYPES, record.knowledge_type_ids),
            taxonomy.names(LookupKind.TAGS, record.tag_ids),
            record.updated_at,
            record.local_status.value,
        )

    def _custom_gpt_names(self) -> dict[str, str]:
        return {g.id: g.name for g in self._replica.list_custom_gpts(limit=100_000, include_deleted=True)}

    def list_outputs(
        self,
        *,
        filter: OutputFilter,
        order_by: str = "updated_at",
        descending: bool = True,
        offset: int = 0,
        limit: int = 200,
    ) -> list[OutputRow]:
        if offset == 0:
            self.forget_titles()  # a fresh listing: prompt titles may have changed since the last one
        taxonomy = self.taxonomy()
        gpts = self._custom_gpt_names()
        if filter.query.strip():  # search order (best or newest first), paged like the plain list
            hits = self._replica.search_outputs(
                filter.query,
                prompt_id=filter.prompt_id,
                custom_gpt_id=filter.custom_gpt_id,
                gpt_model_id=filter.gpt_model_id,
                accuracy_level_id=filter.accuracy_level_id,
                knowledge_type_id=filter.knowledge_type_id,
                tag_id=filter.tag_id,
                offset=offset,
                limit=limit,
                snippets=False,  # the list shows the excerpt
            )
            records = self._replica.get_outputs(ids=[hit.id for hit in hits])
            self._load_titles(r.prompt_id for r in records)
            return [self._output_row(r, taxonomy, gpts) for r in records]
        records = self._replica.list_outputs(
            prompt_id=filter.prompt_id,
            custom_gpt_id=filter.custom_gpt_id,
            gpt_model_id=filter.gpt_model_id,
            accuracy_level_id=filter.accuracy_level_id,
            knowledge_type_id=filter.knowledge_type_id,
            tag_id=filter.tag_id,
            order_by=order_by,
            descending=descending,
            offset=offset,
            limit=limit,
        )
        self._load_titles(r.prompt_id for r in records)
        return [self._output_row(r, taxonomy, gpts) for r in records]

    def count_output_matches(self, *, filter: OutputFilter) -> MatchCount | None:
        """How many outputs the search in ``filter`` finds, counted up to ``COUNT_CAP`` ("1,000+"), and
        whether they are ranked or newest first; ``None`` without a query (the list is not a search)."""
        if not filter.query.strip():
            return None
        return self._replica.count_output_matches(
            filter.query,
            prompt_id=filter.prompt_id,
            custom_gpt_id=filter.custom_gpt_id,
            gpt_model_id=filter.gpt_model_id,
            accuracy_level_id=filter.accuracy_level_id,
            knowledge_type_id=filter.knowledge_type_id,
            tag_id=filter.tag_id,
        )

    def get_output(self, *, id: str) -> OutputRecord:
        record = self._replica.get_output(id=id)
        if record is None:
            raise NotFoundError("output", id)
        return record

    def output_detail(self, *, id: str) -> OutputDetail:
        record = self.get_output(id=id)
        gpt = self._replica.get_custom_gpt(id=record.custom_gpt_id) if record.custom_gpt_id else None
        return OutputDetail(record, self.prompt_title(record.prompt_id), gpt.name if gpt is not None else "")

    def capture_output(
        self,
        *,
        content: str,
        prompt_id: str | None,
        custom_gpt_id: str | None = None,
        gpt_model_id: str | None = None,
        accuracy_level_id: str | None = None,
        knowledge_type_ids: Sequence[str] = (),
        tag_ids: Sequence[str] = (),
        notes: str = "",
    ) -> str:
        if not content.strip():
            raise InvalidInputError("content", "paste the output first")
        if not prompt_id:
            raise InvalidInputError("prompt_id", "choose the prompt that produced it")
        if self._replica.get_prompt(id=prompt_id) is None:
            raise NotFoundError("prompt", prompt_id, field_name="prompt_id")
        return self._editor.create(
            "output",
            _for_editor(
                {
                    "content": content,
                    "prompt_id": prompt_id,
                    "custom_gpt_id": custom_gpt_id or None,
                    "gpt_model_id": gpt_model_id or None,
                    "accuracy_level_id": accuracy_level_id or None,
                    "knowledge_type_ids": ids(knowledge_type_ids),
                    "tag_ids": ids(tag_ids),
                    "notes": notes,
                }
            ),
        )

    def update_output(
        self,
        *,
        id: str,
        original: OutputRecord,
        content: str,
        prompt_id: str | None,
        custom_gpt_id: str | None = None,
        gpt_model_id: str | None = None,
        accuracy_level_id: str | None = None,
        knowledge_type_ids: Sequence[str] = (),
        tag_ids: Sequence[str] = (),
        notes: str = "",
    ) -> bool:
        """Write the fields changed since ``original`` (what the editor showed), and only those, so the sync
        merges them field by field with edits made elsewhere meanwhile. Sets are written as the current set
        plus what was ticked minus what was unticked. Returns whether anything changed."""
        if not content.strip():
            raise InvalidInputError("content", "the output is empty")
        if not prompt_id:
            raise InvalidInputError("prompt_id", "choose the prompt that produced it")
        wanted: dict[str, Any] = {
            "content": content,
            "prompt_id": prompt_id,
            "custom_gpt_id": custom_gpt_id or None,
            "gpt_model_id": gpt_model_id or None,
            "accuracy_level_id": accuracy_level_id or None,
            "notes": notes,
        }
        changed = {k: v for k, v in wanted.items() if getattr(original, k) != v}
        if "prompt_id" in changed and self._replica.get_prompt(id=prompt_id) is None:
            raise NotFoundError("prompt", prompt_id, field_name="prompt_id")
        with self._replica.transaction():
            current = self._replica.get_output(id=id)
            if current is None:
                raise NotFoundError("output", id)
            if current.deleted:
                raise InvalidInputError("id", "this output has been deleted meanwhile; nothing was saved")
            for name, after in (("knowledge_type_ids", set(knowledge_type_ids)), ("tag_ids", set(tag_ids))):
                before = set(getattr(original, name))
                if after != before:
                    now = set(getattr(current, name))
                    changed[name] = ids((now - (before - after)) | (after - before))
            if changed:
                self._editor.edit("output", id, _for_editor(changed), seen=_seen(original, changed))
        return bool(changed)

    # --- custom GPTs ----------------------------------------------------------------------------------------

    def list_custom_gpts(
        self,
        *,
        filter: CustomGptFilter,
        order_by: str = "name",
        descending: bool = False,
        offset: int = 0,
        limit: int = 200,
    ) -> list[CustomGptRow]:
        taxonomy = self.taxonomy()
        records: list[CustomGptRecord] = self._replica.list_custom_gpts(
            agent_group_id=filter.agent_group_id,
            order_by=order_by,
            descending=descending,
            offset=offset,
            limit=limit,
        )
        needle = filter.query.strip().lower()
        return [
            CustomGptRow(
                r.id,
                r.name,
                taxonomy.name(LookupKind.GPT_MODELS, r.gpt_model_id),
                taxonomy.names(LookupKind.AGENT_GROUPS, r.agent_group_ids),
                r.updated_at,
                r.local_status.value,
            )
            for r in records
            if not needle or needle in r.name.lower() or needle in r.description.lower()
        ]

    def custom_gpt_choices(self) -> list[Choice]:
        return [Choice(g.id, g.name) for g in self._replica.list_custom_gpts(limit=100_000)]

    def get_custom_gpt(self, *, id: str) -> CustomGptRecord:
        record = self._replica.get_custom_gpt(id=id)
        if record is None:
            raise NotFoundError("custom_gpt", id)
        return record

    def save_custom_gpt(
        self,
        *,
        id: str | None = None,
        name: str,
        description: str = "",
        instructions: str = "",
        gpt_model_id: str | None = None,
        agent_group_ids: Sequence[str] = (),
        original: CustomGptRecord | None = None,
    ) -> str:
        """Create, or write the fields changed since ``original`` (what the editor showed), as
        :meth:`save_prompt` does."""
        name = name.strip()
        if not name:
            raise InvalidInputError("name", "a name is required")
        values: dict[str, Any] = {
            "name": name,
            "description": description,
            "instructions": instructions,
            "gpt_model_id": gpt_model_id or None,
            "agent_group_ids": ids(agent_group_ids),
        }
        if id is None:
            return self._editor.create("custom_gpt", _for_editor(values))
        with self._replica.transaction():
            current = self._replica.get_custom_gpt(id=id)
            changed = _changed_since("custom_gpt", id, original, values, current)
            if changed:
                self._editor.edit("custom_gpt", id, _for_editor(changed), seen=_seen(original, changed))
        return id


def _lookup_row(r: LookupRecord) -> LookupRow:
    return LookupRow(
        r.id,
        r.name,
        r.description,
        r.position,
        str(r.score) if r.score is not None else (r.provider or ""),
        r.local_status.value,
    )


_SET_VALUES: Final = (list, tuple, frozenset, set)
"""How an editor's set fields (tags, knowledge types, agent groups) come: as ticked ids."""


def _seen(original: Any, changed: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the editor showed of the single-value and text fields it changes (``LocalLibrary.edit``'s
    ``seen``): one a sync wrote while it was open is then a conflict or a merge with that write, not an
    overwrite of a value its user never saw."""
    if original is None:
        return None
    return {k: getattr(original, k) for k, v in changed.items() if not isinstance(v, _SET_VALUES)}


def _changed_since(
    entity: str, id: str, original: Any, wanted: Mapping[str, Any], current: Any
) -> dict[str, Any]:
    """The fields of ``wanted`` that differ from ``original`` (what an editor loaded; ``current`` when
    None). A set field is written as the current set plus what was ticked minus what was unticked since,
    so members a sync added or removed meanwhile stay as they are. Raises when the record is gone."""
    if current is None:
        raise NotFoundError(entity, id)
    if getattr(current, "deleted", False):
        what = "custom GPT" if entity == "custom_gpt" else entity.replace("_", " ")
        raise InvalidInputError("id", f"this {what} has been deleted meanwhile; nothing was saved")
    base = current if original is None else original
    changed: dict[str, Any] = {}
    for name, value in wanted.items():
        if isinstance(value, _SET_VALUES):
            before, after = set(getattr(base, name)), set(value)
            if after != before:
                now = set(getattr(current, name))
                changed[name] = ids((now - (before - after)) | (after - before))
        elif getattr(base, name) != value:
            changed[name] = value
    return changed


def _for_editor(values: Mapping[str, Any]) -> dict[str, Any]:
    """Set fields as frozensets of id strings (the sync schema's set type)."""
    return {k: frozenset(v) if k.endswith("_ids") else v for k, v in values.items()}
