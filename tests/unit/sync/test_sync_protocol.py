"""The wire form of changes and states: a lossless round trip, and clear errors for malformed input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outputhub.common.clock import HLC
from outputhub.sync.client.client import _item
from outputhub.sync.engine import (
    DEFAULT_SCHEMA,
    RecordState,
    make_create,
    make_delete,
    make_edit,
    merge_change,
)
from outputhub.sync.ports import RemoteItem
from outputhub.sync.protocol import (
    COMPACT_MIN,
    CURRENT,
    MAX_NODE_CHARS,
    ProtocolError,
    change_from_wire,
    change_to_wire,
    check_uniform,
    compact_state_wire,
    expand_state_wire,
    expand_uniform,
    state_from_wire,
    state_to_wire,
    uniform_state_wire,
)


def created_prompt(values: dict[str, object]) -> RecordState:
    """The state of prompt p1 created with ``values`` by one operation (node a)."""
    change = make_create(
        "prompt", "p1", values, schema=DEFAULT_SCHEMA, node="a", hlc=HLC(1000, 0, "a"), op_id="op0"
    )
    return merge_change(None, change, DEFAULT_SCHEMA).state


texts = st.text(alphabet="ab\n", max_size=12)
ids = st.frozensets(st.sampled_from(["t1", "t2", "t3"]), max_size=3)


@given(
    title=st.text(max_size=8),
    bodies=st.lists(texts, min_size=1, max_size=4),
    tags=st.lists(ids, min_size=1, max_size=3),
    concurrent=st.booleans(),
    delete=st.booleans(),
)
def test_states_and_changes_survive_the_wire(
    title: str, bodies: list[str], tags: list[frozenset[str]], concurrent: bool, delete: bool
) -> None:
    schema = DEFAULT_SCHEMA
    create = make_create(
        "prompt",
        "p1",
        {"title": title, "body": bodies[0], "tag_ids": tags[0]},
        schema=schema,
        node="a",
        hlc=HLC(1000, 0, "a"),
        op_id="op0",
    )
    changes = [create]
    state = merge_change(None, create, schema).state
    base = state
    for n, (body, tag_set) in enumerate(zip(bodies[1:], tags[1:] + tags[:1], strict=False), start=1):
        node = "b" if concurrent and n % 2 else "a"
        source = base if node == "b" else state
        edit = make_edit(
            source,
            {"body": body, "tag_ids": tag_set},
            schema=schema,
            node=node,
            hlc=HLC(1000 + n, 0, node),
            op_id=f"op{n}",
        )
        if edit is not None:
            changes.append(edit)
            state = merge_change(state, edit, schema).state
    if delete and not state.deleted:
        removal = make_delete(state, schema=schema, node="c", hlc=HLC(5000, 0, "c"), op_id="del")
        changes.append(removal)
        state = merge_change(state, removal, schema).state
    wire = json.loads(json.dumps(state_to_wire(state)))
    assert state_from_wire("prompt", "p1", wire) == state
    # protocol 3: the uniform form, where it applies, stands for exactly this state
    uniform = uniform_state_wire("prompt", wire)
    assert (uniform is not None) == (len(changes) == 1)
    if uniform is not None:
        assert expand_uniform("prompt", json.loads(json.dumps(uniform))) == wire
        with pytest.raises(ProtocolError, match="expanded"):
            state_from_wire("prompt", "p1", uniform)
    for change in changes:
        assert change_from_wire(json.loads(json.dumps(change_to_wire(change)))) == change


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {
                "entity": "prompt",
                "id": "x",
                "kind": "update",
                "node": "a",
                "hlc": "nope",
                "values": {"title": "t"},
                "base": {"title": ["", []]},
                "op_id": "o",
            },
            "hlc",
        ),
        (
            {
                "entity": "planet",
                "id": "x",
                "kind": "create",
                "node": "a",
                "hlc": HLC(1, 0, "a").encode(),
                "op_id": "o",
            },
            "unknown entity",
        ),
        (
            {
                "entity": "prompt",
                "id": "x",
                "kind": "create",
                "node": "a",
                "hlc": HLC(1, 0, "a").encode(),
                "values": {"tag_ids": "t1"},
                "op_id": "o",
            },
            "list of strings",
        ),
        (
            {"entity": "prompt", "kind": "create", "node": "a", "hlc": HLC(1, 0, "a").encode(), "op_id": "o"},
            "missing 'id'",
        ),
    ],
)
def test_malformed_changes_are_refused_with_a_reason(payload: dict[str, object], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        change_from_wire(payload)


def test_a_node_longer_than_a_device_id_is_refused_naming_it() -> None:
    """An op's node (its replica's id, the device part of each version) is stored in the record's state, in
    every later base and superseded set: a push with a node of 1,000,000 characters was applied, and the tag
    it made weighed 2 MB (QA). It is bounded as a push's ``device`` is."""
    for node in ("N" * (MAX_NODE_CHARS + 1), "N" * 1_000_000):
        payload = {
            "entity": "tag",
            "id": "00000000-0000-0000-0000-000000000001",
            "kind": "create",
            "node": node,
            "hlc": HLC(1, 0, node).encode(),
            "values": {"name": "t"},
            "op_id": "o",
        }
        with pytest.raises(ProtocolError, match="node") as raised:
            change_from_wire(payload)
        assert raised.value.field == "node"
    fits = "N" * MAX_NODE_CHARS
    payload = {**payload, "node": fits, "hlc": HLC(1, 0, fits).encode()}
    assert change_from_wire(payload).node == fits


long_texts = st.sampled_from(["", "short", "x" * 63, "L" * 64 + "\n", "M" * 80, "line one\n" * 10])


@given(
    bodies=st.lists(long_texts, min_size=1, max_size=5),
    descriptions=st.lists(long_texts, min_size=1, max_size=3),
    concurrent=st.booleans(),
)
def test_a_compact_state_expands_to_the_same_state(
    bodies: list[str], descriptions: list[str], concurrent: bool
) -> None:
    """Protocol 2: long text writes equal to the record's data travel as the marker; the client puts the
    data's text back and gets exactly the state the server holds (heads, history and concurrent writes)."""
    schema = DEFAULT_SCHEMA
    state = created_prompt({"title": "t", "body": bodies[0], "description": descriptions[0]})
    base = state
    edits = [{"body": b} for b in bodies[1:]] + [{"description": d} for d in descriptions[1:]]
    for n, values in enumerate(edits, start=1):
        node = "b" if concurrent and n % 2 else "a"
        edit = make_edit(
            base if node == "b" else state,
            values,
            schema=schema,
            node=node,
            hlc=HLC(1000 + n, 0, node),
            op_id=f"op{n}",
        )
        if edit is not None:
            state = merge_change(state, edit, schema).state
    data = {name: state.values[name] for name in ("title", "body", "description")}
    wire = state_to_wire(state)
    long_in_data = [v for v in data.values() if isinstance(v, str) and len(v) >= COMPACT_MIN]
    # protocol 2: the text markers alone
    marked = compact_state_wire("prompt", wire, data, uniform=False)
    sent = json.loads(json.dumps(marked if marked is not None else wire))
    assert (marked is not None) == any(json.dumps(v) in json.dumps(wire) for v in long_in_data)
    for name, register in sent["f"].items():  # no write's value repeats a long text of the data
        for write in register["h"] + register.get("y", []):
            assert not (write[2] == data.get(name) and write[2] in long_in_data)
    assert state_from_wire("prompt", "p1", expand_state_wire("prompt", sent, data)) == state
    # protocol 3: the uniform form too, exactly when one operation wrote the whole state
    compact = compact_state_wire("prompt", wire, data)
    sent3 = json.loads(json.dumps(compact if compact is not None else wire))
    assert expand_state_wire("prompt", sent3, data) == wire
    assert state_from_wire("prompt", "p1", expand_state_wire("prompt", sent3, data)) == state
    writes = [w for register in wire["f"].values() for w in register["h"] + register.get("y", [])]
    single = all(len(r["h"]) == 1 and not r["s"] and "y" not in r for r in wire["f"].values()) and len(
        {(w[0], w[1]) for w in writes + wire["t"]["h"]}
    ) == 1
    assert ("u" in sent3) == single
    if len(bodies) == 1 and len(descriptions) == 1:
        assert "u" in sent3  # a record created and never edited


@pytest.mark.parametrize(
    "wire",
    [
        {"u": ["001-000000-a"], "v": {}},
        {"u": ["001-000000-a", "op"], "v": {"planet": 1}},
        {"u": ["001-000000-a", "op"], "v": []},
        {"u": ["001-000000-a", "op"], "v": {}, "f": {}},
    ],
)
def test_a_malformed_uniform_state_is_a_protocol_error(wire: dict[str, object]) -> None:
    with pytest.raises(ProtocolError, match="state prompt"):
        expand_state_wire("prompt", wire, {})
    with pytest.raises(ProtocolError, match="state prompt"):
        check_uniform("prompt", wire, {}.get)


_uniform_values = st.dictionaries(
    st.sampled_from(["title", "body", "description", "version", "planet"]),
    st.one_of(st.text(max_size=5), st.just(CURRENT), st.integers(), st.none()),
    max_size=4,
)


@given(
    stamp=st.one_of(
        st.just(["001-000000-a", "op"]),
        st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=3),
        st.none(),
    ),
    values=st.one_of(_uniform_values, st.lists(st.integers(), max_size=2)),
    extra=st.booleans(),
    data=st.dictionaries(
        st.sampled_from(["title", "body", "description"]),
        st.one_of(st.text(max_size=5), st.none(), st.integers()),
        max_size=3,
    ),
    entity=st.sampled_from(["prompt", "output", "tag", "planet"]),
)
def test_checking_a_uniform_state_refuses_exactly_what_expanding_it_refuses(
    stamp: object, values: object, extra: bool, data: dict[str, object], entity: str
) -> None:
    """The pull checks a uniform state without expanding it (``sync.client.client._item``); the check must
    let through only what the expansion accepts, and refuse what it refuses."""
    wire: dict[str, object] = {"u": stamp, "v": values}
    if extra:
        wire["f"] = {}
    try:
        expand_state_wire(entity, wire, data)
    except ProtocolError:
        with pytest.raises(ProtocolError):
            check_uniform(entity, wire, data.get)
    else:
        check_uniform(entity, wire, data.get)


def test_a_marker_without_its_text_is_a_protocol_error() -> None:
    head = [["001-000000-a", "op", CURRENT, None, []]]
    wire = {"f": {"body": {"h": head, "s": []}}, "t": {"h": [], "s": []}}
    with pytest.raises(ProtocolError, match="body"):
        expand_state_wire("prompt", wire, {"body": None})
    assert expand_state_wire("prompt", wire, {"body": "the text"})["f"]["body"]["h"][0][2] == "the text"
    plain = {"f": {"title": {"h": [["001-000000-a", "op", "x", None, []]], "s": []}}}
    assert expand_state_wire("prompt", plain, {}) is plain


def test_a_pulled_uniform_state_is_checked_at_once_and_expanded_on_use() -> None:
    state = created_prompt({"title": "t", "body": "b" * COMPACT_MIN})
    wire = state_to_wire(state)
    data = {"id": "p1", "title": "t", "body": "b" * COMPACT_MIN}
    compact = json.loads(json.dumps(compact_state_wire("prompt", wire, data)))
    assert "u" in compact and compact["v"]["body"] == CURRENT
    record = {"entity": "prompts", "id": "p1", "revision": 3, "deleted": False}
    record |= {"data": data, "state": compact}
    item = _item(record)
    assert item.wire == compact
    assert item.state == expand_state_wire("prompt", compact, data) == wire
    assert state_from_wire("prompt", "p1", item.state) == state
    # a uniform state whose marker has no text to stand for is refused when the page is read
    with pytest.raises(ProtocolError, match="body"):
        _item({**record, "data": {"id": "p1", "title": "t"}})
    with pytest.raises(TypeError):
        RemoteItem("prompt", "p1", 3, False, data)  # neither the state nor its compact form
