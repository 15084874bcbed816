"""Aggregates for the Analytics view and the settings kept in the replica: exact counts on known data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from replica_support import PASSPHRASE, new_id, output, prompt

from outputhub.desktop.storage import Replica, open_replica


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    with open_replica(tmp_path / "r.db", passphrase=PASSPHRASE, create=True) as opened:
        yield opened


def test_aggregates_count_live_rows_exactly(replica: Replica) -> None:
    stage_a, stage_b, model_x, model_y = new_id(), new_id(), new_id(), new_id()
    good, bad, kt, tag = new_id(), new_id(), new_id(), new_id()
    p1 = prompt(development_stage_id=stage_a, tag_ids=(tag,))
    p2 = prompt(development_stage_id=stage_a)
    p3 = prompt(development_stage_id=stage_b)
    gone = prompt(development_stage_id=stage_b, tag_ids=(tag,))
    for p in (p1, p2, p3, gone):
        replica.upsert_prompt(record=p)
    replica.delete_prompt(id=gone.id)
    may = datetime(2024, 5, 3, tzinfo=UTC)
    june = datetime(2024, 6, 9, tzinfo=UTC)
    rows = [
        output(
            p1.id, gpt_model_id=model_x, accuracy_level_id=good, produced_at=may, knowledge_type_ids=(kt,)
        ),
        output(
            p1.id, gpt_model_id=model_x, accuracy_level_id=good, produced_at=june, knowledge_type_ids=(kt,)
        ),
        output(p1.id, gpt_model_id=model_x, accuracy_level_id=bad, tag_ids=(tag,)),
        output(
            p2.id, gpt_model_id=model_y, accuracy_level_id=good, produced_at=june, knowledge_type_ids=(kt,)
        ),
        output(p2.id, gpt_model_id=None, accuracy_level_id=None),
    ]
    deleted = output(p2.id, gpt_model_id=model_y, accuracy_level_id=bad, tag_ids=(tag,))
    replica.bulk_insert_outputs([*rows, deleted])
    replica.delete_output(id=deleted.id)

    by_model = set(replica.accuracy_distribution(group_by="gpt_model_id"))
    assert by_model == {(model_x, good, 2), (model_x, bad, 1), (model_y, good, 1), (None, None, 1)}
    assert set(replica.outputs_by_knowledge_type_per_month()) == {("2024-05", kt, 1), ("2024-06", kt, 2)}
    assert set(replica.prompts_by_stage()) == {(stage_a, 2), (stage_b, 1)}
    assert replica.tag_usage() == [(tag, 1, 1)]
    assert replica.count_live(table="outputs") == 5
    assert replica.count_live(table="prompts") == 3
    with pytest.raises(ValueError):
        replica.accuracy_distribution(group_by="content; DROP TABLE outputs")


def test_settings_round_trip_and_removal(replica: Replica) -> None:
    assert replica.get_setting(key="server_url") is None
    replica.set_setting(key="server_url", value="http://example.test")
    replica.set_setting(key="server_url", value="http://other.test")
    assert replica.get_setting(key="server_url") == "http://other.test"
    replica.set_setting(key="server_url", value=None)
    assert replica.get_setting(key="server_url") is None
    assert replica.node_id  # the node id lives in the same table and is untouched
