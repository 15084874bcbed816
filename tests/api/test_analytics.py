"""Analytics on a known data set built through the API: exact numbers, filters, CSV, isolation, caching."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from outputhub.server.deps import get_now
from outputhub.server.storage.database import set_tenant, unit_of_work
from outputhub.server.storage.tables import Output
from tests.support.client import PASSWORD, Org, add_member, new_org, register

T1 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday
T2 = datetime(2026, 1, 7, 9, 30, tzinfo=UTC)  # same week
T3 = datetime(2026, 1, 20, 23, 59, tzinfo=UTC)  # a Tuesday, two weeks later
T4 = datetime(2026, 2, 3, 0, 0, tzinfo=UTC)  # a Tuesday in February


@dataclass
class Library:
    org: Org
    ids: dict[str, str]

    def get(self, path: str, **params: object) -> dict:
        r = self.org.owner.get(f"{self.org.base}/analytics/{path}", params=params)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def library(app, client) -> Iterator[Library]:
    """Four prompts, two custom GPTs, seven outputs at four moments (see the table in each test)."""
    org = new_org(client, name="Analytics Inc")
    o = org.owner
    ids: dict[str, str] = {}
    for slug, name in (
        ("accuracy-levels", "Incorrect"),
        ("accuracy-levels", "Partially correct"),
        ("accuracy-levels", "Mostly correct"),
        ("accuracy-levels", "Accurate"),
        ("development-stages", "Idea"),
        ("development-stages", "Draft"),
        ("development-stages", "Production"),
        ("knowledge-types", "Factual"),
        ("knowledge-types", "Procedural"),
        ("knowledge-types", "Creative"),
        ("knowledge-types", "Code"),
        ("gpt-models", "GPT-4o"),
        ("gpt-models", "GPT-4o mini"),
        ("gpt-models", "GPT-4.1"),
        ("agent-groups", "General"),
    ):
        ids[name] = org.lookup(slug, name)
    ids["Research"] = o.post(f"{org.base}/agent-groups", json={"name": "Research"}).json()["id"]
    for tag in ("python", "sql", "unused"):
        ids[tag] = o.post(f"{org.base}/tags", json={"name": tag}).json()["id"]
    ids["Coder"] = o.post(
        f"{org.base}/custom-gpts",
        json={"name": "Coder", "gpt_model_id": ids["GPT-4o"], "agent_group_ids": [ids["General"]]},
    ).json()["id"]
    ids["Scholar"] = o.post(
        f"{org.base}/custom-gpts",
        json={
            "name": "Scholar",
            "gpt_model_id": ids["GPT-4o mini"],
            "agent_group_ids": [ids["General"], ids["Research"]],
        },
    ).json()["id"]
    for title, stage, tags in (
        ("Terminal", "Draft", ["python"]),
        ("Translator", "Production", ["python", "sql"]),
        ("Poet", "Idea", []),
        ("Orphan", None, []),
    ):
        r = o.post(
            f"{org.base}/prompts",
            json={
                "title": title,
                "body": f"act as a {title.lower()}",
                "development_stage_id": ids[stage] if stage else None,
                "tag_ids": [ids[t] for t in tags],
            },
        )
        assert r.status_code == 201, r.text
        ids[title] = r.json()["id"]

    outputs = (
        # name, moment, prompt, custom GPT, explicit model, accuracy, knowledge types, tags
        ("o1", T1, "Terminal", "Coder", None, "Accurate", ["Code"], ["python"]),
        ("o2", T1, "Terminal", "Coder", None, "Mostly correct", ["Code", "Procedural"], []),
        ("o3", T2, "Translator", "Scholar", None, "Accurate", ["Factual"], ["sql"]),
        ("o4", T3, "Translator", "Scholar", None, "Incorrect", ["Factual"], ["python", "sql"]),
        ("o5", T3, "Translator", None, "GPT-4.1", "Partially correct", [], []),
        ("o6", T4, "Poet", None, None, None, ["Creative"], []),
        ("o7", T4, "Poet", "Coder", None, "Incorrect", ["Creative"], []),
    )
    try:
        for name, moment, prompt, gpt, model, level, kinds, tags in outputs:
            app.dependency_overrides[get_now] = lambda moment=moment: moment
            body: dict[str, object] = {
                "prompt_id": ids[prompt],
                "content": f"output {name}",
                "knowledge_type_ids": [ids[k] for k in kinds],
                "tag_ids": [ids[t] for t in tags],
            }
            if gpt:
                body["custom_gpt_id"] = ids[gpt]
            if model:
                body["gpt_model_id"] = ids[model]
            if level:
                body["accuracy_level_id"] = ids[level]
            r = o.post(f"{org.base}/outputs", json=body)
            assert r.status_code == 201, r.text
            ids[name] = r.json()["id"]
    finally:
        app.dependency_overrides.pop(get_now, None)
    yield Library(org=org, ids=ids)


LEVELS = ["Incorrect", "Partially correct", "Mostly correct", "Accurate", "Unrated"]


def series(result: dict) -> dict[str, list]:
    return {s["name"]: s["data"] for s in result["series"]}


def test_accuracy_by_every_dimension(library):
    by_model = library.get("accuracy", by="gpt_model")
    assert by_model["labels"] == ["GPT-4o", "GPT-4o mini", "GPT-4.1", "No GPT model"]
    assert by_model["keys"][:3] == [library.ids[m] for m in ("GPT-4o", "GPT-4o mini", "GPT-4.1")]
    assert by_model["keys"][3] is None
    # one series per accuracy level, by score, then the unrated outputs
    assert [s["name"] for s in by_model["series"]] == LEVELS
    assert [s["score"] for s in by_model["series"]] == [0, 40, 75, 100, None]
    assert series(by_model) == {
        "Incorrect": [1, 1, 0, 0],
        "Partially correct": [0, 0, 1, 0],
        "Mostly correct": [1, 0, 0, 0],
        "Accurate": [1, 1, 0, 0],
        "Unrated": [0, 0, 0, 1],
    }
    assert by_model["totals"] == [3, 2, 1, 1]
    assert by_model["rated"] == [3, 2, 1, 0]
    assert by_model["mean_score"] == [58.33, 50.0, 40.0, None]

    by_gpt = library.get("accuracy", by="custom_gpt")
    assert by_gpt["labels"] == ["Coder", "Scholar", "No custom GPT"]
    assert series(by_gpt) == {
        "Incorrect": [1, 1, 0],
        "Partially correct": [0, 0, 1],
        "Mostly correct": [1, 0, 0],
        "Accurate": [1, 1, 0],
        "Unrated": [0, 0, 1],
    }
    assert by_gpt["mean_score"] == [58.33, 50.0, 40.0]

    # an output counts in every agent group of its custom GPT
    by_group = library.get("accuracy", by="agent_group")
    assert by_group["labels"] == ["General", "Research", "No agent group"]
    assert series(by_group) == {
        "Incorrect": [2, 1, 0],
        "Partially correct": [0, 0, 1],
        "Mostly correct": [1, 0, 0],
        "Accurate": [2, 1, 0],
        "Unrated": [0, 0, 1],
    }
    assert by_group["totals"] == [5, 2, 2]
    assert by_group["mean_score"] == [55.0, 50.0, 40.0]

    by_stage = library.get("accuracy", by="development_stage")
    assert by_stage["labels"] == ["Idea", "Draft", "Production"]
    assert series(by_stage) == {
        "Incorrect": [1, 0, 1],
        "Partially correct": [0, 0, 1],
        "Mostly correct": [0, 1, 0],
        "Accurate": [0, 1, 1],
        "Unrated": [1, 0, 0],
    }
    assert by_stage["mean_score"] == [0.0, 87.5, 46.67]


def test_knowledge_types_over_time(library):
    weekly = library.get("knowledge-types", bucket="week")
    assert weekly["labels"] == ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26", "2026-02-02"]
    assert series(weekly) == {
        "Factual": [1, 0, 1, 0, 0],
        "Procedural": [1, 0, 0, 0, 0],
        "Conceptual": [0, 0, 0, 0, 0],
        "Creative": [0, 0, 0, 0, 2],
        "Code": [2, 0, 0, 0, 0],
        "No knowledge type": [0, 0, 1, 0, 0],
    }
    assert weekly["totals"] == [3, 0, 2, 0, 2]

    monthly = library.get("knowledge-types", bucket="month")
    assert monthly["labels"] == ["2026-01-01", "2026-02-01"]
    assert monthly["totals"] == [5, 2]
    assert series(monthly)["Factual"] == [2, 0]

    daily = library.get("knowledge-types", bucket="day")
    assert (
        len(daily["labels"]) == 30
        and daily["labels"][0] == "2026-01-05"
        and daily["labels"][-1] == "2026-02-03"
    )
    nonzero = {label: n for label, n in zip(daily["labels"], daily["totals"], strict=True) if n}
    assert nonzero == {"2026-01-05": 2, "2026-01-07": 1, "2026-01-20": 2, "2026-02-03": 2}

    # a date range: from inclusive, to exclusive; the labels cover the range's buckets
    ranged = library.get("knowledge-types", bucket="week", **{"from": "2026-01-06", "to": "2026-01-21"})
    assert ranged["labels"] == ["2026-01-05", "2026-01-12", "2026-01-19"]
    assert ranged["totals"] == [1, 0, 2]
    edge = library.get(
        "knowledge-types", bucket="day", **{"from": "2026-01-20T23:59:00Z", "to": "2026-02-03"}
    )
    assert (
        sum(edge["totals"]) == 2 and edge["labels"][0] == "2026-01-20" and edge["labels"][-1] == "2026-02-02"
    )


def test_stage_funnel(library):
    funnel = library.get("stage-funnel")
    assert funnel["labels"] == ["Idea", "Draft", "Testing", "Production", "Retired", "No stage"]
    assert series(funnel) == {
        "Prompts at this stage": [1, 1, 0, 1, 0, 1],
        "Reached this stage or later": [3, 2, 1, 1, 0, 1],
        "Outputs": [2, 2, 0, 3, 0, 0],
    }
    # an output-side filter narrows the prompts to those with a matching output
    narrowed = library.get("stage-funnel", gpt_model_id=library.ids["GPT-4o"])
    assert series(narrowed) == {
        "Prompts at this stage": [1, 1, 0, 0, 0, 0],
        "Reached this stage or later": [2, 1, 0, 0, 0, 0],
        "Outputs": [1, 2, 0, 0, 0, 0],
    }


def test_tag_usage(library):
    tags = library.get("tags")
    assert tags["labels"] == ["python", "sql", "unused"]
    assert series(tags) == {"Outputs": [2, 2, 0], "Prompts": [2, 1, 0]}
    assert library.get("tags", limit=1)["labels"] == ["python"]
    # only outputs created from 2026-01-07 on: o3 (sql), o4 (python, sql)
    later = library.get("tags", **{"from": "2026-01-07"})
    assert later["labels"] == ["sql", "python", "unused"]
    assert series(later) == {"Outputs": [2, 1, 0], "Prompts": [1, 1, 0]}


def test_prompt_ranking(library):
    best = library.get("prompt-ranking")
    assert best["labels"] == ["Terminal", "Translator", "Poet"]
    assert best["keys"] == [library.ids[t] for t in ("Terminal", "Translator", "Poet")]
    assert series(best) == {"Mean accuracy score": [87.5, 46.67, 0.0], "Rated outputs": [2, 3, 1]}
    worst = library.get("prompt-ranking", order="worst")
    assert worst["labels"] == ["Poet", "Translator", "Terminal"]
    assert library.get("prompt-ranking", order="worst", limit=1)["labels"] == ["Poet"]
    assert library.get("prompt-ranking", min_outputs=2)["labels"] == ["Terminal", "Translator"]


def test_overview(library):
    assert {
        k: v
        for k, v in library.get("overview").items()
        if k in ("outputs", "rated_outputs", "mean_score", "prompts")
    } == {
        "outputs": 7,
        "rated_outputs": 6,
        "mean_score": 52.5,
        "prompts": 4,
    }
    accurate = library.get("overview", accuracy_level_id=library.ids["Accurate"])
    assert (accurate["outputs"], accurate["mean_score"], accurate["prompts"]) == (2, 100.0, 2)


@pytest.mark.parametrize(
    ("params", "expected_totals"),
    [
        ({"agent_group_id": "Research"}, {"GPT-4o mini": 2}),
        ({"tag_id": ["python", "sql"]}, {"GPT-4o mini": 1}),
        ({"knowledge_type_id": "Code"}, {"GPT-4o": 2}),
        ({"development_stage_id": "Production"}, {"GPT-4o mini": 2, "GPT-4.1": 1}),
        ({"prompt_id": "Poet"}, {"GPT-4o": 1, "No GPT model": 1}),
        ({"custom_gpt_id": "Scholar"}, {"GPT-4o mini": 2}),
        ({"gpt_model_id": ["GPT-4.1", "GPT-4o mini"]}, {"GPT-4o mini": 2, "GPT-4.1": 1}),
        ({"accuracy_level_id": "Incorrect"}, {"GPT-4o": 1, "GPT-4o mini": 1}),
        ({"from": "2026-01-20"}, {"GPT-4o": 1, "GPT-4o mini": 1, "GPT-4.1": 1, "No GPT model": 1}),
        ({"to": "2026-01-07T09:30:00Z"}, {"GPT-4o": 2}),
    ],
)
def test_every_filter(library, params, expected_totals):
    resolved = {
        k: ([library.ids[x] for x in v] if isinstance(v, list) else library.ids.get(v, v))
        for k, v in params.items()
    }
    result = library.get("accuracy", by="gpt_model", **resolved)
    assert dict(zip(result["labels"], result["totals"], strict=True)) == expected_totals


def test_csv_download(library):
    r = library.org.owner.get(
        f"{library.org.base}/analytics/accuracy", params={"by": "gpt_model", "format": "csv"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="accuracy-by-gpt-model.csv"'
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == [
        "GPT model",
        "id",
        "Incorrect",
        "Partially correct",
        "Mostly correct",
        "Accurate",
        "Unrated",
        "Total",
        "Rated",
        "Mean accuracy score",
    ]
    assert rows[1] == ["GPT-4o", library.ids["GPT-4o"], "1", "0", "1", "1", "0", "3", "3", "58.33"]
    assert rows[4] == ["No GPT model", "", "0", "0", "0", "0", "1", "1", "0", ""]
    for path, params in (
        ("overview", {}),
        ("knowledge-types", {"bucket": "month"}),
        ("stage-funnel", {}),
        ("tags", {}),
        ("prompt-ranking", {"order": "worst"}),
    ):
        r = library.org.owner.get(f"{library.org.base}/analytics/{path}", params={**params, "format": "csv"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), path
        as_json = library.get(path, **params)
        body = list(csv.reader(io.StringIO(r.text)))
        assert [row[0] for row in body[1:]] == as_json["labels"], path
    ranking = list(
        csv.reader(
            io.StringIO(
                library.org.owner.get(
                    f"{library.org.base}/analytics/prompt-ranking", params={"format": "csv"}
                ).text
            )
        )
    )
    assert ranking[1] == ["Terminal", library.ids["Terminal"], "87.5", "2"]


def test_csv_defuses_formulas(client):
    org = new_org(client)
    tag = org.owner.post(f"{org.base}/tags", json={"name": "=HYPERLINK(1)"}).json()["id"]
    text = org.owner.get(f"{org.base}/analytics/tags", params={"format": "csv"}).text
    assert f"'=HYPERLINK(1),{tag},0,0" in text


def test_csv_defuses_formulas_in_the_header_row(app, client):
    """Series names (accuracy levels, knowledge types) head the columns: they are defused like the row labels
    (found by QA: an accuracy level named `=EVIL()` reached the header row raw)."""
    org = new_org(client)
    o = org.owner
    level = o.post(f"{org.base}/accuracy-levels", json={"name": "=EVIL()", "score": 50}).json()["id"]
    kind = o.post(f"{org.base}/knowledge-types", json={"name": "+KT()"}).json()["id"]
    gpt = o.post(f"{org.base}/custom-gpts", json={"name": "-GPT"}).json()["id"]
    prompt = o.post(f"{org.base}/prompts", json={"title": "@SUM(1)", "body": "b"}).json()["id"]
    r = o.post(
        f"{org.base}/outputs",
        json={
            "prompt_id": prompt,
            "content": "x",
            "accuracy_level_id": level,
            "knowledge_type_ids": [kind],
            "custom_gpt_id": gpt,
        },
    )
    assert r.status_code == 201, r.text
    dangerous = ("=", "+", "-", "@", "\t", "\r")
    downloads = [
        o.get(f"{org.base}/analytics/{path}", params={**params, "format": "csv"}).text
        for path, params in (
            ("accuracy", {"by": "custom_gpt"}),
            ("knowledge-types", {"bucket": "month"}),
            ("overview", {}),
            ("stage-funnel", {}),
            ("tags", {}),
            ("prompt-ranking", {}),
        )
    ]
    # the portal's downloads share the writer
    web = TestClient(app)
    token = re.search(r'name="csrf" value="([^"]+)"', web.get("/portal/login").text).group(1)
    web.post("/portal/login", data={"email": o.email, "password": PASSWORD, "csrf": token, "next": ""})
    choices = {"by": "custom_gpt", "bucket": "month"}
    for name in ("accuracy", "knowledge-types", "overview", "stage-funnel", "tags", "best-prompts"):
        r = web.get(f"/portal/orgs/{org.id}/analytics/{name}.csv", params=choices)
        assert r.status_code == 200, name
        downloads.append(r.text)
    for text in downloads:
        rows = list(csv.reader(io.StringIO(text)))
        cells = [cell for row in rows for cell in row]
        assert all(not cell.startswith(dangerous) for cell in cells), rows
    accuracy = list(csv.reader(io.StringIO(downloads[0])))
    assert "'=EVIL()" in accuracy[0] and accuracy[1][0] == "'-GPT"
    assert "'@SUM(1)" in downloads[5]
    assert "'+KT()" in next(csv.reader(io.StringIO(downloads[1])))



@pytest.mark.parametrize(
    "params",
    [
        {"to": "0001-01-01"},
        {"from": "9999-12-31T12:00:00", "to": "9999-12-31T13:00:00", "bucket": "day"},
        {"from": "9999-12-01", "to": "9999-12-31T12:00:00", "bucket": "day"},
        {"from": "9999-12-01", "to": "9999-12-31T12:00:00", "bucket": "week"},
        {"from": "9999-11-01", "to": "9999-12-31T12:00:00", "bucket": "month"},
        {"from": "0001-01-01", "to": "0001-02-01", "bucket": "day"},
    ],
)
def test_the_calendars_first_and_last_days(library, params):
    """Knowledge types over time at the ends of the calendar: no bucket before 0001-01-01 or after
    9999-12-31 is computed (they were a 500, an OverflowError)."""
    result = library.get("knowledge-types", **params)
    assert sum(result["totals"]) == 0
    if "from" in params:
        assert result["labels"][0] == params["from"][:10] or params["bucket"] == "week"
    for path in ("overview", "accuracy", "stage-funnel", "tags", "prompt-ranking"):
        library.get(path, **params)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"by": "colour"}, "query.by"),
        ({"bucket": "year"}, "query.bucket"),
        ({"format": "xml"}, "query.format"),
        ({"from": "yesterday"}, "query.from"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "query.from"),
        ({"limit": 0}, "query.limit"),
        ({"min_outputs": 0}, "query.min_outputs"),
        ({"order": "middle"}, "query.order"),
        ({"tag_id": "not-a-uuid"}, "query.tag_id.0"),
        ({"bucket": "day", "from": "2020-01-01", "to": "2026-01-01"}, "query.bucket"),
        ({"to": "0001-01-01T00:00:00+01:00"}, "query.to"),  # before the calendar in UTC
        ({"from": "9999-12-31T23:00:00-02:00"}, "query.from"),  # after it
    ],
)
def test_bad_parameters_are_422_naming_the_field(library, params, field):
    path = {
        "by": "accuracy",
        "bucket": "knowledge-types",
        "limit": "tags",
        "min_outputs": "prompt-ranking",
        "order": "prompt-ranking",
    }.get(next(iter(params)), "accuracy")
    r = library.org.owner.get(f"{library.org.base}/analytics/{path}", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json()["errors"]]


def test_tenant_isolation_and_roles(client, library):
    stranger = register(client, name="stranger")
    for path in ("overview", "accuracy", "knowledge-types", "stage-funnel", "tags", "prompt-ranking"):
        r = stranger.get(f"{library.org.base}/analytics/{path}")
        assert r.status_code == 404, path
    assert client.get(f"{library.org.base}/analytics/overview").status_code == 401
    # another organization's ids as filters find nothing in it, and nothing of ours leaks
    other = new_org(client, owner=stranger)
    theirs = other.owner.get(
        f"{other.base}/analytics/accuracy", params={"gpt_model_id": library.ids["GPT-4o"]}
    )
    assert theirs.status_code == 200 and theirs.json()["labels"] == []
    assert other.owner.get(f"{other.base}/analytics/overview").json()["outputs"] == 0
    assert "python" not in other.owner.get(f"{other.base}/analytics/tags").json()["labels"]
    # a viewer may read analytics (no API key here: test_flow counts the keys of the shared database)
    viewer = add_member(library.org, "viewer")
    assert viewer.get(f"{library.org.base}/analytics/overview").json()["outputs"] == 7


def test_results_are_cached_until_a_write(app, client):
    org = new_org(client)
    o = org.owner
    prompt = o.post(f"{org.base}/prompts", json={"title": "P", "body": "b"}).json()["id"]
    accurate = org.lookup("accuracy-levels", "Accurate")
    out = o.post(
        f"{org.base}/outputs", json={"prompt_id": prompt, "content": "x", "accuracy_level_id": accurate}
    )
    assert o.get(f"{org.base}/analytics/overview").json()["mean_score"] == 100.0

    # a change that bypasses the write path (no cache generation bump) is not seen: the answer is cached
    services = app.state.services
    incorrect = org.lookup("accuracy-levels", "Incorrect")
    with unit_of_work(services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        session.execute(
            update(Output)
            .where(Output.id == uuid.UUID(out.json()["id"]))
            .values(accuracy_level_id=uuid.UUID(incorrect))
        )
    assert o.get(f"{org.base}/analytics/overview").json()["mean_score"] == 100.0

    # any committed write through the API bumps the generation: the next answer is recomputed
    o.post(f"{org.base}/outputs", json={"prompt_id": prompt, "content": "y", "accuracy_level_id": accurate})
    after = o.get(f"{org.base}/analytics/overview").json()
    assert (after["outputs"], after["mean_score"]) == (2, 50.0)
    ranking = o.get(f"{org.base}/analytics/prompt-ranking").json()
    assert series(ranking)["Rated outputs"] == [2]
