from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outputhub.common.clock import HLC, receive, tick
from outputhub.common.names import normalize_name
from outputhub.sync.engine import (
    DEFAULT_SCHEMA,
    Change,
    Checkpoint,
    ConflictKind,
    InvalidChangeError,
    Pulled,
    RecordState,
    dedupe_lookups,
    fold_changes,
    make_create,
    make_delete,
    make_edit,
    merge_change,
    name_key,
    plan,
    remap_references,
)

S = DEFAULT_SCHEMA
TAG_LOW = "10000000-0000-4000-8000-000000000000"
TAG_HIGH = "f0000000-0000-4000-8000-000000000000"
PROMPT = "50000000-0000-4000-8000-000000000000"


class Clock:
    def __init__(self, node: str, now_ms: int = 1_000_000) -> None:
        self.node, self.now_ms, self.last = node, now_ms, None
        self.ops = 0

    def hlc(self) -> HLC:
        self.now_ms += 5
        self.last = tick(self.last, now_ms=self.now_ms, node=self.node)
        return self.last

    def op(self) -> str:
        self.ops += 1
        return f"{self.node}-{self.ops}"

    def create(self, entity: str, record_id: str, **values: object) -> Change:
        return make_create(
            entity, record_id, values, schema=S, node=self.node, hlc=self.hlc(), op_id=self.op()
        )

    def edit(self, state: RecordState, **values: object) -> Change:
        # A replica receives the clock of everything it pulled before it edits.
        self.last = receive(self.last, max(state.known_versions), now_ms=self.now_ms, node=self.node)
        change = make_edit(state, values, schema=S, node=self.node, hlc=self.hlc(), op_id=self.op())
        assert change is not None
        return change


def state_of(*changes: Change) -> RecordState:
    state = fold_changes(changes, S)
    assert state is not None
    return state


# -- lookup dedup ------------------------------------------------------------------------------------------


def test_name_key_matches_the_server_uniqueness_rule() -> None:
    assert name_key("  Python ") == name_key("PYTHON") == "python"
    assert name_key("Straße") == name_key("STRASSE")


CAFE_NFC = "Caf\u00e9"  # é as one code point (what most keyboards give)
CAFE_NFD = "Cafe\u0301"  # e + combining acute (what macOS input often gives)


def test_name_key_ignores_unicode_normalization() -> None:
    """The tag "Café" typed as NFC and as NFD was two tags (QA): the key is the NFC form of the stripped,
    case-folded name: one rule for the server's unique index and a replica's merge (``common/names.py``)."""
    from outputhub.server.api.lookups.service import name_key as server_name_key

    assert CAFE_NFC != CAFE_NFD
    assert name_key(CAFE_NFC) == name_key(f"  {CAFE_NFD} ") == name_key("CAF\u00c9") == "caf\u00e9"
    assert server_name_key is name_key, "the server and the sync engine keep one rule"


@settings(max_examples=300)
@given(st.text(max_size=20))
def test_name_key_is_the_same_for_every_normal_form_and_for_the_stored_name(text: str) -> None:
    forms = {unicodedata.normalize(form, text) for form in ("NFC", "NFD")}
    assert len({name_key(f) for f in forms}) == 1
    stored = normalize_name(text)
    assert stored == normalize_name(stored) == unicodedata.normalize("NFC", stored) == stored.strip()
    assert name_key(stored) == name_key(text)


@settings(max_examples=100)
@given(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
        lambda t: name_key(t) != ""
    ),
    st.sampled_from(("NFC", "NFD")),
    st.sampled_from(("NFC", "NFD")),
)
def test_lookups_made_offline_in_two_normal_forms_merge(text: str, first: str, second: str) -> None:
    """Two replicas make the same tag offline, one typing it in NFC and the other in NFD: one survives."""
    a, b = Clock("node-a"), Clock("node-b")
    tag_b = state_of(b.create("tag", TAG_LOW, name=unicodedata.normalize(first, text)))
    tag_a = state_of(a.create("tag", TAG_HIGH, name=unicodedata.normalize(second, text)))
    result = dedupe_lookups([tag_a, tag_b], S)
    assert result.survivors == {("tag", name_key(text)): TAG_LOW}
    assert result.remap == {TAG_HIGH: TAG_LOW}


def test_the_cafe_made_offline_as_nfc_and_as_nfd_is_one_tag() -> None:
    a, b = Clock("node-a"), Clock("node-b")
    tag_b = state_of(b.create("tag", TAG_LOW, name=CAFE_NFD))
    tag_a = state_of(a.create("tag", TAG_HIGH, name=CAFE_NFC))
    assert dedupe_lookups([tag_a, tag_b], S).remap == {TAG_HIGH: TAG_LOW}


def test_same_lookup_created_offline_twice_keeps_the_lowest_id() -> None:
    a, b = Clock("node-a"), Clock("node-b")
    tag_b = state_of(b.create("tag", TAG_LOW, name="python"))
    tag_a = state_of(a.create("tag", TAG_HIGH, name=" Python"))
    other = state_of(a.create("knowledge_type", "20000000-0000-4000-8000-000000000000", name="python"))
    for records in ([tag_a, tag_b, other], [other, tag_b, tag_a]):
        result = dedupe_lookups(records, S)
        assert result.survivors == {("tag", "python"): TAG_LOW}
        assert result.remap == {TAG_HIGH: TAG_LOW}
        assert result.duplicates == (("tag", TAG_HIGH),)


def test_deleted_and_non_lookup_records_are_not_deduplicated() -> None:
    a = Clock("node-a")
    tag = state_of(a.create("tag", TAG_LOW, name="python"))
    gone_create = a.create("tag", TAG_HIGH, name="python")
    gone = state_of(gone_create)
    gone = merge_change(gone, make_delete(gone, schema=S, node="node-a", hlc=a.hlc(), op_id="d"), S).state
    prompt = state_of(a.create("prompt", PROMPT, title="python"))
    assert dedupe_lookups([tag, gone, prompt], S).remap == {}


def test_references_are_remapped_by_an_ordinary_edit() -> None:
    a, b = Clock("node-a"), Clock("node-b")
    prompt = state_of(a.create("prompt", PROMPT, title="P", tag_ids={TAG_HIGH, "other"}))
    change = remap_references(prompt, {TAG_HIGH: TAG_LOW}, schema=S, node="node-a", hlc=a.hlc(), op_id="r1")
    assert change is not None
    assert change.values == {"tag_ids": frozenset({TAG_LOW, "other"})}
    # Two replicas doing the same remap concurrently converge without a conflict.
    b.last = receive(b.last, a.last or HLC(0, 0, "x"), now_ms=b.now_ms, node="node-b")
    twin = remap_references(prompt, {TAG_HIGH: TAG_LOW}, schema=S, node="node-b", hlc=b.hlc(), op_id="r2")
    assert twin is not None
    final = merge_change(merge_change(prompt, change, S).state, twin, S).state
    assert final.values["tag_ids"] == frozenset({TAG_LOW, "other"})
    assert final.conflicts == ()
    assert (
        remap_references(final, {TAG_HIGH: TAG_LOW}, schema=S, node="node-a", hlc=a.hlc(), op_id="r3") is None
    )


def test_scalar_references_are_remapped() -> None:
    a = Clock("node-a")
    stage_dup, stage = "d0000000-0000-4000-8000-000000000000", "a0000000-0000-4000-8000-000000000000"
    prompt = state_of(a.create("prompt", PROMPT, title="P", development_stage_id=stage_dup))
    change = remap_references(prompt, {stage_dup: stage}, schema=S, node="node-a", hlc=a.hlc(), op_id="r")
    assert change is not None and change.values == {"development_stage_id": stage}


# -- planner -----------------------------------------------------------------------------------------------


def test_plan_applies_remote_changes_and_pushes_what_the_server_lacks() -> None:
    me, them = Clock("me"), Clock("them")
    create = them.create("prompt", PROMPT, title="T", body="a\nb\nc")
    local = state_of(create)
    mine = me.edit(local, body="A\nb\nc")
    local = merge_change(local, mine, S).state
    theirs = them.edit(state_of(create), body="a\nb\nC")
    result = plan(
        [mine],
        [Pulled(7, create), Pulled(9, theirs)],
        Checkpoint(7),
        local_states={("prompt", PROMPT): local},
    )
    assert result.skipped == 1
    assert result.checkpoint == Checkpoint(9)
    assert result.max_remote_hlc == theirs.hlc
    assert result.push == (mine,)
    assert result.acknowledged == ()
    assert result.apply[("prompt", PROMPT)].values["body"] == "A\nb\nC"
    assert result.conflicts == ()


def test_plan_acknowledges_own_changes_echoed_by_the_server() -> None:
    me = Clock("me")
    create = me.create("prompt", PROMPT, title="T")
    edit = me.edit(state_of(create), title="U")
    local = state_of(create, edit)
    result = plan([create, edit], [Pulled(1, create)], Checkpoint(), local_states={("prompt", PROMPT): local})
    assert result.acknowledged == (create.op_id,)
    assert result.push == (edit,)
    assert result.apply == {}  # nothing new locally
    assert result.checkpoint == Checkpoint(1)


def test_plan_reports_conflicts_it_opens() -> None:
    me, them = Clock("me"), Clock("them", now_ms=2_000_000)
    create = me.create("prompt", PROMPT, title="T")
    base = state_of(create)
    mine, theirs = me.edit(base, title="mine"), them.edit(base, title="theirs")
    local = state_of(create, mine)
    result = plan([mine], [Pulled(3, theirs)], Checkpoint(2), local_states={("prompt", PROMPT): local})
    (conflict,) = result.conflicts
    assert conflict.kind is ConflictKind.VALUE
    assert conflict.winner.value == "theirs"
    assert conflict.loser.value == "mine"
    assert result.push == (mine,)


def test_full_resync_from_a_snapshot_keeps_local_edits() -> None:
    """Cursor older than the tombstone retention: pull everything again from Checkpoint(); the snapshot is
    a set of record states, joined with the local ones, so pending local edits survive and are pushed."""
    me, them = Clock("me"), Clock("them")
    create = them.create("prompt", PROMPT, title="T", body="x")
    other_id = "60000000-0000-4000-8000-000000000000"
    other = them.create("prompt", other_id, title="O")
    server_prompt = state_of(create, them.edit(state_of(create), title="T2"))
    mine = me.edit(state_of(create), body="x\nmine")
    local = state_of(create, mine)
    result = plan(
        [mine],
        [Pulled(40, server_prompt), Pulled(41, state_of(other))],
        Checkpoint(),
        local_states={("prompt", PROMPT): local},
    )
    merged = result.apply[("prompt", PROMPT)]
    assert merged.values == {**local.values, "title": "T2"}
    assert result.apply[("prompt", other_id)].values["title"] == "O"
    assert result.push == (mine,)
    assert result.checkpoint == Checkpoint(41)


def test_plan_runs_lookup_dedup_over_the_result() -> None:
    a, b = Clock("node-a"), Clock("node-b")
    mine = a.create("tag", TAG_HIGH, name="python")
    theirs = b.create("tag", TAG_LOW, name="Python")
    result = plan([mine], [Pulled(1, theirs)], Checkpoint(), local_states={("tag", TAG_HIGH): state_of(mine)})
    assert result.dedup.remap == {TAG_HIGH: TAG_LOW}


def test_negative_checkpoint_is_refused() -> None:
    with pytest.raises(InvalidChangeError):
        Checkpoint(-1)
