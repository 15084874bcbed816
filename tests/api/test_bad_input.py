"""Bad input gets a 4xx problem document naming the field, never a 500, and changes nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta, timezone

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from outputhub.server.problems import install_problem_handlers
from tests.support.client import cursor, new_org, seed_library

MISSING = str(uuid.uuid4())
HUGE = 99999999999999999999  # beyond 64 bits
EARLY = "0001-01-01T00:00:00+14:00"  # before 0001-01-01 in UTC
LATE = "9999-12-31T23:59:59-00:30"  # after 9999-12-31 in UTC


@pytest.fixture(scope="module")
def world(client):
    org = new_org(client)
    ids = seed_library(org)
    return org, ids


LISTS = [  # (a paged list, a sort it takes); the sorts' values are date-times, text and integers
    ("/prompts", "-created_at"),
    ("/prompts", "title"),
    ("/outputs", "updated_at"),
    ("/custom-gpts", "name"),
    ("/tags", "name"),
    ("/knowledge-types", "-updated_at"),
    ("/development-stages", "position"),
    ("/gpt-models", "-position"),
]


def shape(sort: str, value: object) -> dict[str, object]:
    """A cursor of the shape the server makes for ``sort``, with ``value`` as the last row's sort value."""
    return {"s": sort.lstrip("-"), "d": sort.startswith("-"), "v": value, "i": MISSING}


def cases(ids):
    long_name = "x" * 201
    return [
        # (method, path under the org, body or params, status, field)
        ("POST", "/prompts", {"title": "t"}, 422, "body.body"),
        ("POST", "/prompts", {"title": "", "body": "b"}, 422, "body.title"),
        ("POST", "/prompts", {"title": "t", "body": "b", "tag_ids": "python"}, 422, "body.tag_ids"),
        ("POST", "/prompts", {"title": "t", "body": "b", "tag_ids": [MISSING]}, 422, "body.tag_ids"),
        (
            "POST",
            "/prompts",
            {"title": "t", "body": "b", "development_stage_id": ids["tag"]},
            422,
            "body.development_stage_id",
        ),
        ("POST", "/prompts", {"title": "t", "body": "b", "colour": "red"}, 422, "body.colour"),
        ("POST", "/prompts", {"id": "not-a-uuid", "title": "t", "body": "b"}, 422, "body.id"),
        ("POST", "/prompts", {"id": ids["prompt"], "title": "t", "body": "b"}, 409, "body.id"),
        ("PATCH", f"/prompts/{ids['prompt']}", {"title": None}, 422, "body.title"),
        ("PATCH", f"/prompts/{ids['prompt']}", {"body": 42}, 422, "body.body"),
        ("PATCH", f"/prompts/{MISSING}", {"title": "x"}, 404, None),
        ("GET", "/prompts/not-a-uuid", None, 422, "path.prompt_id"),
        ("GET", "/prompts", {"cursor": "bm90IGEgY3Vyc29y"}, 422, "query.cursor"),
        # cursors of well-formed JSON with values of the wrong type (they reached the query: a 500; QA)
        *[
            ("GET", path, {"sort": sort, "cursor": cursor(shape(sort, value))}, 422, "query.cursor")
            for path, sort in LISTS
            for value in ([], {}, None, True, 1.5, {"t": 5}, {"t": EARLY}, {"t": "2026-01-01", "x": 1})
        ],
        (
            "GET",
            "/outputs",
            {"cursor": cursor(shape("-created_at", "2026-01-01T00:00:00Z"))},
            422,
            "query.cursor",
        ),
        ("GET", "/tags", {"sort": "name", "cursor": cursor(shape("name", "a\x00b"))}, 422, "query.cursor"),
        ("GET", "/tags", {"sort": "name", "cursor": cursor(shape("name", "\ud800"))}, 422, "query.cursor"),
        (
            "GET",
            "/development-stages",
            {"sort": "position", "cursor": cursor(shape("position", "3"))},
            422,
            "query.cursor",
        ),
        (
            "GET",
            "/development-stages",
            {"sort": "position", "cursor": cursor(shape("position", HUGE))},
            422,
            "query.cursor",
        ),
        (
            "GET",
            "/prompts",
            {"cursor": cursor(shape("-created_at", {"t": "2026-01-01"}) | {"i": 7})},
            422,
            "query.cursor",
        ),
        (
            "GET",
            "/prompts",
            {"cursor": cursor(["created_at", True, "2026-01-01", MISSING])},
            422,
            "query.cursor",
        ),
        ("GET", "/prompts", {"sort": "password"}, 422, "query.sort"),
        ("GET", "/prompts", {"limit": 0}, 422, "query.limit"),
        ("GET", "/prompts", {"tag_id": "abc"}, 422, "query.tag_id.0"),
        ("GET", f"/prompts/{ids['prompt']}/diff", {"from": 1, "to": 99}, 404, "query.to"),
        ("GET", f"/prompts/{ids['prompt']}/diff", {"from": 1}, 422, "query.to"),
        # integers beyond 64 bits: refused before they reach the database (SQLite raised OverflowError; QA)
        ("GET", f"/prompts/{ids['prompt']}/versions/{HUGE}", None, 422, "path.version"),
        ("GET", f"/prompts/{ids['prompt']}/versions/{2**63}", None, 422, "path.version"),
        ("GET", f"/prompts/{ids['prompt']}/diff", {"from": 1, "to": HUGE}, 422, "query.to"),
        ("GET", f"/prompts/{ids['prompt']}/diff", {"from": 2**63, "to": 1}, 422, "query.from"),
        ("GET", "/sync/changes", {"protocol": 4, "since": HUGE}, 422, "query.since"),
        ("GET", "/sync/changes", {"protocol": 4, "since": 2**63}, 422, "query.since"),
        ("GET", "/sync/changes", {"protocol": HUGE}, 422, "query.protocol"),
        ("POST", "/outputs", {"prompt_id": ids["prompt"]}, 422, "body.content"),
        ("POST", "/outputs", {"prompt_id": MISSING, "content": "c"}, 422, "body.prompt_id"),
        (
            "POST",
            "/outputs",
            {"prompt_id": ids["prompt"], "content": "c", "accuracy_level_id": ids["knowledge"]},
            422,
            "body.accuracy_level_id",
        ),
        (
            "POST",
            "/outputs",
            {"prompt_id": ids["prompt"], "content": "c", "knowledge_type_ids": [MISSING]},
            422,
            "body.knowledge_type_ids",
        ),
        (
            "POST",
            "/outputs",
            {"prompt_id": ids["prompt"], "content": "c", "produced_at": "yesterday"},
            422,
            "body.produced_at",
        ),
        # date-times an offset carries past year 1 or 9999 in UTC (astimezone raised OverflowError; QA)
        (
            "POST",
            "/outputs",
            {"prompt_id": ids["prompt"], "content": "c", "produced_at": "0001-01-01T00:00:00+14:00"},
            422,
            "body.produced_at",
        ),
        (
            "POST",
            "/outputs/bulk",
            {
                "items": [
                    {"prompt_id": ids["prompt"], "content": "fine", "produced_at": "0001-01-01T00:00:00Z"},
                    {"prompt_id": ids["prompt"], "content": "c", "produced_at": "0001-01-01T00:00:00+14:00"},
                ]
            },
            422,
            "body.items.1.produced_at",
        ),
        ("PATCH", f"/outputs/{ids['output']}", {"produced_at": LATE}, 422, "body.produced_at"),
        ("GET", "/outputs", {"created_after": "0001-01-01T00:00:00+01:00"}, 422, "query.created_after"),
        ("GET", "/outputs", {"created_before": "9999-12-31T23:59:59-01:00"}, 422, "query.created_before"),
        ("GET", "/analytics/overview", {"from": "0001-01-01T00:00:00+14:00"}, 422, "query.from"),
        ("GET", "/audit", {"from": "0001-01-01T00:00:00+14:00"}, 422, "query.from"),
        ("GET", "/audit", {"to": "9999-12-31T23:59:59-12:00"}, 422, "query.to"),
        ("GET", "/audit", {"cursor": cursor({"at": EARLY, "id": MISSING})}, 422, "query.cursor"),
        ("GET", "/audit", {"cursor": cursor({"at": "2026-01-01T00:00:00Z", "id": 7})}, 422, "query.cursor"),
        ("GET", "/audit", {"cursor": cursor(["2026-01-01T00:00:00Z", MISSING])}, 422, "query.cursor"),
        # metadata numbers a document store cannot hold (orjson raised "Integer exceeds 64-bit range"; QA)
        (
            "POST",
            "/outputs",
            {"prompt_id": ids["prompt"], "content": "m", "metadata": {"n": 2**64}},
            422,
            "body.metadata",
        ),
        (
            "POST",
            "/outputs",
            {"prompt_id": ids["prompt"], "content": "m", "metadata": {"a": [{"n": -(2**63) - 1}]}},
            422,
            "body.metadata",
        ),
        (
            "POST",
            "/outputs/bulk",
            {"items": [{"prompt_id": ids["prompt"], "content": "m", "metadata": {"n": 2**64}}]},
            422,
            "body.items.0.metadata",
        ),
        (
            "POST",
            "/outputs/bulk",
            {
                "items": [
                    {"prompt_id": ids["prompt"], "content": "fine", "metadata": {"n": 1}},
                    {"prompt_id": ids["prompt"], "content": "m", "metadata": {"n": HUGE}},
                ]
            },
            422,
            "body.items.1.metadata",
        ),
        ("POST", "/outputs/bulk", {"items": []}, 422, "body.items"),
        (
            "POST",
            "/outputs/bulk",
            {"items": [{"prompt_id": ids["prompt"], "content": "c"}] * 1001},
            422,
            "body.items",
        ),
        (
            "POST",
            "/outputs/bulk",
            {"items": [{"id": MISSING, "prompt_id": ids["prompt"], "content": "c"}] * 2},
            422,
            "body.items",
        ),
        ("PATCH", f"/outputs/{ids['output']}", {"custom_gpt_id": ids["prompt"]}, 422, "body.custom_gpt_id"),
        ("POST", "/custom-gpts", {"name": long_name}, 422, "body.name"),
        ("POST", "/custom-gpts", {"name": "g", "gpt_model_id": ids["agent_group"]}, 422, "body.gpt_model_id"),
        (
            "POST",
            "/custom-gpts",
            {"name": "g", "agent_group_ids": [ids["gpt_model"]]},
            422,
            "body.agent_group_ids",
        ),
        ("POST", "/tags", {"name": "PYTHON"}, 409, "body.name"),
        ("POST", "/tags", {"name": "   "}, 422, "body.name"),
        ("POST", "/tags", {"name": "\u200b"}, 422, "body.name"),  # a blank entry in every list (QA)
        ("PATCH", f"/tags/{ids['tag']}", {"name": " \u2060 "}, 422, "body.name"),
        ("POST", "/accuracy-levels", {"name": "Great", "score": 101}, 422, "body.score"),
        ("POST", "/accuracy-levels", {"name": "Great", "position": -1}, 422, "body.position"),
        ("POST", "/tags", {"name": "pp", "position": True}, 422, "body.position"),  # stored as 1 (QA)
        ("PATCH", f"/tags/{ids['tag']}", {"position": 2.0}, 422, "body.position"),
        ("POST", "/accuracy-levels", {"name": "Fine", "score": False}, 422, "body.score"),
        ("PATCH", f"/tags/{ids['tag']}", {"name": None}, 422, "body.name"),
        ("POST", "/api-keys", {"name": "k", "scope": "admin"}, 422, "body.scope"),
        ("POST", "/invitations", {"email": "not-an-email", "role": "viewer"}, 422, "body.email"),
        ("POST", "/invitations", {"email": "a@example.com", "role": "king"}, 422, "body.role"),
        ("PATCH", "", {"name": ""}, 422, "body.name"),
    ]


def test_bad_input_is_a_problem_naming_the_field(client, world):
    org, ids = world
    o = org.owner
    before = o.get(f"{org.base}/prompts", params={"limit": 500}).json()
    outputs_before = o.get(f"{org.base}/outputs", params={"limit": 500}).json()
    for method, path, payload, status, field in cases(ids):
        kwargs = {"params": payload} if method == "GET" else {"json": payload}
        r = o.request(method, f"{org.base}{path}", **kwargs)
        label = f"{method} {path} {str(payload)[:80]}"
        assert r.status_code == status, f"{label}: {r.status_code} {r.text[:300]}"
        assert r.headers["content-type"] == "application/problem+json", label
        problem = r.json()
        assert problem["status"] == status and problem["title"] and problem["detail"], label
        if field:
            assert field in [e["field"] for e in problem.get("errors", [])], f"{label}: {problem}"
    assert o.get(f"{org.base}/prompts", params={"limit": 500}).json() == before
    assert o.get(f"{org.base}/outputs", params={"limit": 500}).json() == outputs_before


def test_malformed_and_oversized_bodies(client, world):
    org, _ = world
    h = {**org.owner.headers, "content-type": "application/json"}
    r = client.post(f"{org.base}/prompts", content=b'{"title": "t", "body": ', headers=h)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "body"
    r = client.post(f"{org.base}/prompts", content=b"[1, 2]", headers=h)
    assert r.status_code == 422
    big = b'{"title": "t", "body": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = client.post(f"{org.base}/prompts", content=big, headers=h)
    assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body"

    def chunks():
        yield b'{"title": "t", "body": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}'

    r = client.post(f"{org.base}/prompts", content=chunks(), headers=h)
    assert r.status_code == 413


@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"Infinity", b"NaN"])
def test_non_finite_metadata_numbers_are_refused(client, world, number):
    """1e999 was stored as null: a number JSON cannot carry is refused, in one output and in a bulk."""
    org, ids = world
    o = org.owner
    h = {**o.headers, "content-type": "application/json"}
    outputs_before = o.get(f"{org.base}/outputs", params={"limit": 500}).json()
    item = b'{"prompt_id": "%s", "content": "m", "metadata": {"a": {"f": %s}}}' % (
        ids["prompt"].encode(),
        number,
    )
    fine = b'{"prompt_id": "%s", "content": "fine"}' % ids["prompt"].encode()
    for path, body, field in (
        ("/outputs", item, "body.metadata"),
        ("/outputs/bulk", b'{"items": [%s, %s]}' % (fine, item), "body.items.1.metadata"),
    ):
        r = client.post(f"{org.base}{path}", content=body, headers=h)
        assert r.status_code == 422, f"{path} {number!r}: {r.status_code} {r.text[:300]}"
        assert r.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in r.json()["errors"]], r.json()
    assert o.get(f"{org.base}/outputs", params={"limit": 500}).json() == outputs_before


def test_metadata_numbers_at_the_limits_are_kept(client, world):
    org, ids = world
    metadata = {"max": 2**63 - 1, "min": -(2**63), "f": 1.5, "e": 1e300, "b": True, "z": None}
    r = org.owner.post(
        f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "m", "metadata": metadata}
    )
    assert r.status_code == 201, r.text
    body = org.owner.get(f"{org.base}/outputs/{r.json()['id']}/body")
    assert body.status_code == 200, body.text
    assert body.json()["metadata"] == metadata
    assert org.owner.delete(f"{org.base}/outputs/{r.json()['id']}").status_code == 204


def test_auth_errors_are_problems(client, world):
    org, _ = world
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Bearer a.b.c"},
        {"Authorization": "Bearer ohk_zz_zz"},
    ):
        r = client.get(f"{org.base}/prompts", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"] == "Bearer"
    r = client.post(
        "/api/v1/auth/register", json={"email": "weak@example.com", "password": "short", "display_name": "W"}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.password"
    r = client.post(
        "/api/v1/auth/register",
        json={"email": org.owner.email, "password": "long enough pw", "display_name": "Dup"},
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "body.email"
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": "garbage"})
    assert r.status_code == 401
    r = client.get("/api/v1/no-such-route")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = client.put(f"{org.base}/prompts")
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"


def test_an_overflow_anywhere_is_a_problem_not_a_crash() -> None:
    """The safety net behind the parameter bounds: an OverflowError a number causes deeper down is answered
    as a problem by the app (not re-raised to the server, which closed the keep-alive connection)."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    with TestClient(app, raise_server_exceptions=True) as test_client:
        r = test_client.get("/boom")
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["title"] and problem["detail"] and problem["instance"] == "/boom"


def test_date_times_at_the_calendar_edges_and_with_any_offset_are_kept(client):
    """The first and last instants in UTC are date-times like any other; a naive one is UTC, so it mixes
    with an offset one (comparing them raised TypeError: naive and aware)."""
    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    first = o.post(
        f"{org.base}/outputs",
        json={"prompt_id": ids["prompt"], "content": "first", "produced_at": "0001-01-01T10:00:00+10:00"},
    )
    assert first.status_code == 201, first.text
    assert first.json()["produced_at"].startswith("0001-01-01T00:00:00")
    last = o.patch(f"{org.base}/outputs/{ids['output']}", json={"produced_at": "9999-12-31T23:59:59.999999Z"})
    assert last.status_code == 200, last.text
    again = o.get(f"{org.base}/outputs/{ids['output']}").json()
    assert again["produced_at"].startswith("9999-12-31T23:59:59.999999")
    for path, params in (
        ("/outputs", {"created_after": "2020-01-01T00:00:00", "created_before": "9999-12-31T23:59:59Z"}),
        ("/outputs", {"created_after": "0001-01-01T00:00:00Z", "created_before": "9999-12-31T12:00-10:00"}),
        ("/audit", {"from": "2020-01-01T00:00:00", "to": "9999-12-31T23:59:59+00:00"}),
        ("/audit", {"from": "0001-01-01T14:00:00+14:00", "to": "9999-12-31"}),
    ):
        r = o.get(f"{org.base}{path}", params=params)
        assert r.status_code == 200, (path, params, r.text)
        assert len(r.json()["items"]) >= 2, (path, params)


ISO = st.builds(
    lambda at, minutes: at.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.datetimes(),
    st.integers(min_value=-1439, max_value=1439),
)
TEXT = st.text(max_size=20) | st.sampled_from(["", "a\x00b", "\ud800", "Linux Terminal"]) | ISO
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(
    listing=st.sampled_from(LISTS),
    value=JSON | st.builds(lambda t: {"t": t}, JSON),
    ident=st.just(MISSING) | JSON,
    whole=st.none() | JSON,
)
def test_any_json_in_a_cursor_is_a_page_or_a_problem_naming_it(client, world, listing, value, ident, whole):
    """Whatever JSON a cursor holds (any value where the last row's sort value and id go, or any JSON at
    all), the list answers a page or a 422 naming ``query.cursor``: never a 500."""
    org, _ = world
    path, sort = listing
    payload = whole if whole is not None else shape(sort, value) | {"i": ident}
    r = org.owner.get(f"{org.base}{path}", params={"sort": sort, "cursor": cursor(payload)})
    assert r.status_code in (200, 422), r.text
    if r.status_code == 422:
        assert [e["field"] for e in r.json()["errors"]] == ["query.cursor"], r.text
