"""The Kinto comparison benchmark's pure helpers: request bodies, the Kinto configuration, the ratios."""

from __future__ import annotations

import configparser
import itertools

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bench.api import SourcePrompt
from bench.kinto import (
    RECORDS_PATH,
    Plan,
    PushEncoder,
    Refs,
    Side,
    ceiling_table,
    check_batch_answer,
    check_push_answer,
    chunks,
    kinto_batch_body,
    kinto_ini,
    make_records,
    needs_analyze,
    output_values,
    ratios,
    table,
)
from bench.server import PAGE_PATH, add_baseline_routes
from outputhub.common.sync import PROTOCOL_VERSION
from outputhub.sync.engine import ChangeKind
from outputhub.sync.protocol import change_from_wire

SOURCES = [
    SourcePrompt(act="Linux terminal", prompt="I want you to act as a terminal.", for_devs=True, kind="TEXT")
]


def test_chunks_cover_everything_in_order() -> None:
    assert [list(c) for c in chunks(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunks([], 5) == []
    with pytest.raises(ValueError):
        chunks([1], 0)


def test_records_are_about_2_kb_with_unique_ids() -> None:
    records = make_records(SOURCES, 20, start=5)
    assert [r.n for r in records] == list(range(5, 25))
    assert len({r.id for r in records}) == 20
    assert all(len(r.content) == 2048 for r in records)


def test_push_body_is_valid_sync_creates_with_increasing_clocks() -> None:
    refs = Refs.synthetic()
    records = make_records(SOURCES, 5)
    clock = itertools.count(1_700_000_000_000, 0)  # a frozen wall clock: the counter must tick
    encoder = PushEncoder(now_ms=lambda: next(clock))
    body = orjson.loads(encoder.body(records, refs))
    assert body["protocol"] == PROTOCOL_VERSION and body["device"] == encoder.node
    changes = [change_from_wire(c) for c in body["changes"]]
    assert [c.record_id for c in changes] == [r.id for r in records]
    assert all(c.kind is ChangeKind.CREATE and c.entity == "output" for c in changes)
    assert [c.hlc for c in changes] == sorted({c.hlc for c in changes})
    assert changes[0].values["content"] == records[0].content
    assert changes[0].values["knowledge_type_ids"] == frozenset(
        output_values(records[0], refs)["knowledge_type_ids"]
    )


def test_kinto_batch_body_is_one_safe_create_per_record() -> None:
    refs = Refs.synthetic()
    records = make_records(SOURCES, 3)
    body = orjson.loads(kinto_batch_body(records, refs))
    assert body["defaults"] == {"method": "PUT", "headers": {"If-None-Match": "*"}}
    assert [r["path"] for r in body["requests"]] == [f"{RECORDS_PATH}/{r.id}" for r in records]
    assert body["requests"][1]["body"]["data"] == output_values(records[1], refs)


def test_kinto_ini_parses_and_selects_the_backend() -> None:
    memory = configparser.RawConfigParser()
    memory.read_string(kinto_ini(storage_url=None, batch_max_requests=1000, secret="s"))
    app = memory["app:main"]
    assert app["kinto.storage_backend"] == "kinto.core.storage.memory"
    assert app["kinto.batch_max_requests"] == "1000"
    assert app["multiauth.policies"] == "basicauth"
    assert memory["server:main"]["port"] == "%(http_port)s"

    pg = configparser.RawConfigParser()
    url = "postgresql://postgres@127.0.0.1:5432/kinto_bench"
    pg.read_string(kinto_ini(storage_url=url, batch_max_requests=500, secret="s"))
    assert pg["app:main"]["kinto.storage_backend"] == "kinto.core.storage.postgresql"
    assert pg["app:main"]["kinto.storage_url"] == url
    assert pg["app:main"]["kinto.permission_url"] == url


def test_answers_are_checked() -> None:
    check_push_answer({"results": [{"status": "applied"}] * 2}, 2)
    with pytest.raises(RuntimeError):
        check_push_answer({"results": [{"status": "applied"}, {"status": "refused"}]}, 2)
    with pytest.raises(RuntimeError):
        check_push_answer({"results": [{"status": "applied"}]}, 2)
    check_batch_answer({"responses": [{"status": 201}] * 3}, 3)
    with pytest.raises(RuntimeError):
        check_batch_answer({"responses": [{"status": 201}, {"status": 412}]}, 2)


def test_ratios_and_table() -> None:
    results = {
        "ours-postgres": {
            "write_rows_per_s": 300.0,
            "pull_rows_per_s": 9000.0,
            "incremental_rows_per_s": 50.0,
        },
        "kinto-postgresql": {
            "write_rows_per_s": 100.0,
            "pull_rows_per_s": 3000.0,
            "incremental_rows_per_s": 100.0,
        },
    }
    assert ratios(results) == {
        "ours-postgres/kinto-postgresql": {
            "write_rows_per_s": 3.0,
            "pull_rows_per_s": 3.0,
            "incremental_rows_per_s": 0.5,
        }
    }
    text = table(results, Plan(records=10, batch=1000, page=1000, increment=100, rounds=5))
    lines = text.splitlines()
    assert len(lines) == 5
    assert "ours, PostgreSQL" in lines[0] and "ours PG / Kinto PG" in lines[0]
    assert "3.00x" in lines[2] and "0.50x" in lines[4]


def test_analyze_follows_autovacuums_default_threshold() -> None:
    assert not needs_analyze(written=50, analyzed=0)
    assert needs_analyze(written=51, analyzed=0)
    assert not needs_analyze(written=11_000, analyzed=10_000)  # 1,000 < 50 + 1,000
    assert needs_analyze(written=12_000, analyzed=10_000)


def test_a_side_keeps_its_biggest_pull_page() -> None:
    side = Side()
    side.keep_sample(b'{"records": [1, 2]}', 2)
    side.keep_sample(b'{"records": [1, 2, 3]}', 3)
    side.keep_sample(b'{"records": [1]}', 1)  # a last, short page does not replace it
    assert (side.sample, side.sample_records) == (b'{"records": [1, 2, 3]}', 3)


def test_the_bare_page_route_serves_the_stored_bytes_as_they_are() -> None:
    app = FastAPI()
    add_baseline_routes(app)
    page = orjson.dumps({"records": [{"id": n, "content": "x" * 2000} for n in range(50)]})
    with TestClient(app) as client:
        assert client.put(PAGE_PATH, content=page).status_code == 204
        answer = client.get(PAGE_PATH)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.content == page


def test_the_ceiling_table_sets_each_side_against_kintos_pull() -> None:
    results = {
        "ours-postgres": {
            "pull_rows_per_s": 30_000,
            "ceiling_http_rows_per_s": 60_000,
            "ceiling_decode_rows_per_s": 150_000,
        },
        "kinto-postgresql": {
            "pull_rows_per_s": 20_000,
            "ceiling_http_rows_per_s": 80_000,
            "ceiling_decode_rows_per_s": 200_000,
        },
        "kinto-memory": {"pull_rows_per_s": 10_000},  # no ceiling measured: no line
    }
    lines = ceiling_table(results).splitlines()
    assert len(lines) == 4
    assert (
        lines[2]
        == "| ours, PostgreSQL | 30,000 (1.5x Kinto PG) | 60,000 (3.0x Kinto PG) | 150,000 (7.5x Kinto PG) |"
    )
    assert lines[3].startswith("| Kinto, PostgreSQL | 20,000 (1.0x Kinto PG) | 80,000 (4.0x Kinto PG)")
