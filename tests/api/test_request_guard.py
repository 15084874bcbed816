"""The request-wide checks (server/request_guard.py): no NUL character in any text, JSON bodies that really
are JSON. PostgreSQL text columns cannot hold a NUL: each of these was a 500 there (found by QA)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from outputhub.common.clock import HLC
from outputhub.common.schemas import OutputCreate
from outputhub.sync.engine import DEFAULT_SCHEMA, make_create
from outputhub.sync.protocol import change_to_wire
from tests.support.client import new_org, seed_library

NUL = "\u0000"
NODE = "guard-device"


@pytest.fixture(scope="module")
def world(client):
    org = new_org(client, name="Guarded")
    return org, seed_library(org)


def _state(org) -> list[Any]:
    o = org.owner
    return [
        o.get(f"{org.base}/{what}", params={"limit": 500}).json()
        for what in ("prompts", "outputs", "tags", "custom-gpts", "webhooks")
    ] + [[x["name"] for x in o.get("/api/v1/orgs").json()]]


def nul_cases(org, ids) -> list[tuple[str, str, dict[str, Any], str]]:
    """(method, path, request keyword arguments, the field the 422 names)."""
    b = org.base
    prompt = ids["prompt"]
    return [
        ("POST", f"{b}/prompts", {"json": {"title": f"nul{NUL}title", "body": "b"}}, "body.title"),
        ("PATCH", f"{b}/prompts/{prompt}", {"json": {"body": f"a{NUL}"}}, "body.body"),
        ("POST", f"{b}/tags", {"json": {"name": f"t{NUL}ag"}}, "body.name"),
        ("PATCH", f"{b}/tags/{ids['tag']}", {"json": {"name": f"t{NUL}"}}, "body.name"),
        ("POST", "/api/v1/orgs", {"json": {"name": f"Org{NUL}A"}}, "body.name"),
        ("PATCH", b, {"json": {"name": f"Org{NUL}B"}}, "body.name"),
        ("POST", f"{b}/webhooks", {"json": {"url": f"https://example.com/{NUL}"}}, "body.url"),
        ("POST", f"{b}/custom-gpts", {"json": {"name": "g", "instructions": f"x{NUL}"}}, "body.instructions"),
        (
            "POST",
            f"{b}/outputs",
            {"json": {"prompt_id": prompt, "content": "c", "metadata": {"k": [f"v{NUL}"]}}},
            "body.metadata.k.0",
        ),
        (
            "POST",
            f"{b}/outputs/bulk",
            {
                "json": {
                    "items": [{"prompt_id": prompt, "content": "ok"}, {"prompt_id": prompt, "content": NUL}]
                }
            },
            "body.items.1.content",
        ),
        (
            "POST",
            f"{b}/invitations",
            {"json": {"email": "a@example.com", "role": f"viewer{NUL}"}},
            "body.role",
        ),
        ("POST", f"{b}/api-keys", {"json": {"name": f"k{NUL}", "scope": "read"}}, "body.name"),
        ("GET", f"{b}/prompts", {"params": {"q": f"a{NUL}b"}}, "query.q"),
        ("GET", f"{b}/tags", {"params": {"q": f"a{NUL}b"}}, "query.q"),
        ("GET", f"{b}/outputs", {"params": {"q": NUL}}, "query.q"),
        ("GET", f"{b}/audit", {"params": {"entity": f"a{NUL}b"}}, "query.entity"),
        ("GET", f"{b}/sync/records/prompt%00/{prompt}", {}, "path.entity"),
        (
            "POST",
            "/api/v1/auth/login",
            {"json": {"email": "a@example.com", "password": f"p{NUL}"}},
            "body.password",
        ),
        (
            "POST",
            "/api/v1/auth/token",
            {"data": {"username": f"a{NUL}@example.com", "password": "x"}},
            "body.username",
        ),
        (
            "POST",
            f"{b}/sync/push",
            {"json": {"protocol": 4, "device": f"d{NUL}", "changes": []}},
            "body.device",
        ),
        ("POST", f"{b}/sync/conflicts/{uuid.uuid4()}/resolve", {"json": {"value": f"v{NUL}"}}, "body.value"),
    ]


def test_a_nul_character_anywhere_is_a_422_naming_the_field(client, world):
    org, ids = world
    before = _state(org)
    for method, path, kwargs, field in nul_cases(org, ids):
        r = org.owner.request(method, path, **kwargs)
        label = f"{method} {path} {kwargs}"
        assert r.status_code == 422, f"{label}: {r.status_code} {r.text[:300]}"
        assert r.headers["content-type"] == "application/problem+json", label
        problem = r.json()
        assert field in [e["field"] for e in problem["errors"]], f"{label}: {problem}"
        assert "NUL" in problem["detail"], label
    assert _state(org) == before


def test_a_nul_in_a_metadata_key_says_so(client, world):
    org, ids = world
    r = org.owner.post(
        f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "c", "metadata": {f"k{NUL}": 1}}
    )
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "body.metadata" and "NUL" in error["message"], error
    assert "empty" not in error["message"]
    # the schema says it too (for callers that validate without the app's check in front)
    with pytest.raises(ValidationError) as raised:
        OutputCreate.model_validate({"prompt_id": ids["prompt"], "content": "c", "metadata": {f"k{NUL}": 1}})
    message = str(raised.value)
    assert "NUL" in message and "empty" not in message and "start with $" not in message


def test_text_without_nul_still_goes_through(client, world):
    """The check looks for the character, not for look-alikes: a literal backslash-u0000 and other control
    characters are text like any other."""
    org, _ = world
    for name in ("back\\u0000slash", "tab\tand\u0001soh", "\u00e9t\u00e9 \u2603"):
        r = org.owner.post(f"{org.base}/tags", json={"name": name})
        assert r.status_code == 201, r.text
        assert r.json()["name"] == name


def _op(values: dict[str, Any]) -> dict[str, Any]:
    change = make_create(
        "tag",
        str(uuid.uuid4()),
        values,
        schema=DEFAULT_SCHEMA,
        node=NODE,
        hlc=HLC(int(time.time() * 1000) - 60_000, 0, NODE),
        op_id=f"op-{uuid.uuid4()}",
    )
    return change_to_wire(change)


def test_a_sync_push_refuses_a_nul_value_for_its_op_alone(client, world):
    org, _ = world
    bad, fine = _op({"name": f"a{NUL}b"}), _op({"name": "fine-after-nul"})
    r = org.owner.post(f"{org.base}/sync/push", json={"protocol": 4, "device": NODE, "changes": [bad, fine]})
    assert r.status_code == 200, r.text
    refused, applied = r.json()["results"]
    assert refused["status"] == "refused", refused
    assert refused["error"]["code"] == "invalid" and refused["error"]["field"] == "name", refused
    assert "NUL" in refused["error"]["detail"]
    assert applied["status"] == "applied", applied
    names = [t["name"] for t in org.owner.get(f"{org.base}/tags", params={"limit": 500}).json()["items"]]
    assert "fine-after-nul" in names and f"a{NUL}b" not in names


def test_bodies_that_are_not_utf8_json_are_malformed_json(client, world):
    org, _ = world
    h = {**org.owner.headers, "content-type": "application/json"}
    text = json.dumps({"title": "caf\u00e9", "body": "b"}, ensure_ascii=False)
    for body, why in (
        (text.encode("latin-1"), "latin-1"),
        (text.encode("utf-16"), "utf-16"),
        (text.encode("utf-32-le"), "utf-32"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b'{"title": ' + b"9" * 5000 + b', "body": "b"}', "more digits"),  # an unnamed 400 (QA)
    ):
        r = client.post(f"{org.base}/prompts", content=body, headers=h)
        assert r.status_code == 400, f"{why}: {r.status_code} {r.text[:300]}"
        assert r.headers["content-type"] == "application/problem+json", why
        problem = r.json()
        assert problem["type"] == "https://outputhub.dev/problems/malformed-json", f"{why}: {problem}"
        assert [e["field"] for e in problem["errors"]] == ["body"], why
        if why == "more digits":
            assert why in problem["detail"], problem
    # UTF-8 is read as before
    r = client.post(f"{org.base}/prompts", content=text.encode(), headers=h)
    assert r.status_code == 201 and r.json()["title"] == "caf\u00e9", r.text
    assert org.owner.delete(f"{org.base}/prompts/{r.json()['id']}").status_code == 204


@pytest.mark.parametrize(
    "content_type", ["text/csv", "text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_a_body_that_is_not_json_is_a_415(client, world, content_type):
    org, _ = world
    headers = dict(org.owner.headers)
    if content_type:
        headers["content-type"] = content_type
    r = client.post(f"{org.base}/prompts", content=b"title,body\nx,y\n", headers=headers)
    assert r.status_code == 415, f"{content_type}: {r.status_code} {r.text[:300]}"
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "https://outputhub.dev/problems/unsupported-media-type"
    assert [e["field"] for e in problem["errors"]] == ["header.Content-Type"], problem
    # JSON under its other names is read
    for json_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        r = client.post(
            f"{org.base}/tags",
            content=b'{"name": "typed-%d"}' % len(json_type),
            headers={**headers, "content-type": json_type},
        )
        assert r.status_code == 201, f"{json_type}: {r.text}"
        assert org.owner.delete(f"{org.base}/tags/{r.json()['id']}").status_code == 204


def test_resolving_a_conflict_refuses_unknown_fields(client, world):
    """Every write body refuses fields it does not know; the conflict resolution took {"extra": 1} (QA)."""
    org, _ = world
    r = org.owner.post(
        f"{org.base}/sync/conflicts/{uuid.uuid4()}/resolve", json={"keep": "winner", "extra": 1}
    )
    assert r.status_code == 422, r.text
    assert "body.extra" in [e["field"] for e in r.json()["errors"]]


LONE = "\udc00"  # half of a UTF-16 pair: valid as a JSON escape, not Unicode text (UTF-8 cannot encode it)


def _escaped(client, org, method: str, path: str, body: Any) -> Any:
    """Send ``body`` as JSON with every non-ASCII character escaped (a lone surrogate as ``\\udc00``)."""
    headers = {**org.owner.headers, "content-type": "application/json"}
    return client.request(method, path, content=json.dumps(body).encode(), headers=headers)


def test_a_lone_surrogate_is_refused_like_a_nul_and_a_push_refuses_its_op_alone(client, world):
    """A JSON body may carry ``"\\udc00"``; it decoded to a string no encoder takes: the sync push answered
    500 and stored none of its ops, and so did a conflict resolution (found by QA)."""
    org, _ = world
    before = _state(org)
    bad, fine = _op({"name": f"a{LONE}b"}), _op({"name": "fine-after-surrogate"})
    unknown_field = _op({"name": "unknown-field"})
    unknown_field["values"][LONE] = "x"
    body = {"protocol": 4, "device": NODE, "changes": [bad, unknown_field, fine]}
    r = _escaped(client, org, "POST", f"{org.base}/sync/push", body)
    assert r.status_code == 200, r.text
    refused, other, applied = r.json()["results"]
    assert (refused["status"], refused["error"]["field"]) == ("refused", "name"), refused
    assert "surrogate" in refused["error"]["detail"]
    assert other["status"] == "refused", other
    assert applied["status"] == "applied", applied

    named = _op({"name": "op-id-with-a-surrogate"})
    named["op_id"] = f"op{LONE}"
    for method, path, body, field in (
        ("POST", f"{org.base}/sync/push", {"protocol": 4, "device": NODE, "changes": [named]}, "op_id"),
        ("POST", f"{org.base}/sync/conflicts/{uuid.uuid4()}/resolve", {"value": f"v{LONE}"}, "body.value"),
        ("POST", f"{org.base}/prompts", {"title": f"t{LONE}", "body": "b"}, "body.title"),
        ("POST", f"{org.base}/tags", {f"name{LONE}": "x", "name": "y"}, "body"),
    ):
        r = _escaped(client, org, method, path, body)
        assert r.status_code == 422, f"{method} {path}: {r.status_code} {r.text[:300]}"
        problem = r.json()
        assert any(e["field"].endswith(field) for e in problem["errors"]), problem
        assert "surrogate" in problem["detail"], problem
    # the same character sent as raw bytes (which the JSON parser also lets through)
    raw = b'{"title": "t\xed\xb0\x80", "body": "b"}'
    headers = {**org.owner.headers, "content-type": "application/json"}
    r = client.post(f"{org.base}/prompts", content=raw, headers=headers)
    assert r.status_code in (400, 422), r.text
    after = _state(org)
    tags_after = [t for t in after[2]["items"] if t["name"] != "fine-after-surrogate"]
    assert tags_after == before[2]["items"] and after[:2] == before[:2]

    # a pair (json.dumps writes this one as the escapes \ud83d\ude00) is one character, and fine
    r = _escaped(client, org, "POST", f"{org.base}/tags", {"name": "smile \U0001f600"})
    assert r.status_code == 201 and r.json()["name"] == "smile \U0001f600", r.text


def test_a_body_sent_with_a_content_encoding_is_a_415(client, world):
    """A gzipped push answered a misleading "not UTF-8" and a plain body labelled gzip, zstd or a made-up
    coding was taken (found by QA): bodies are read as sent, so any Content-Encoding but identity is a 415
    naming the header, and nothing is stored."""
    import gzip

    org, _ = world
    headers = {**org.owner.headers, "content-type": "application/json"}
    body = b'{"name": "encoded"}'
    sent = (("gzip", gzip.compress(body)), ("gzip", body), ("zstd", body), ("x-bogus", body))
    for encoding, content in sent:
        labelled = {**headers, "content-encoding": encoding}
        r = client.post(f"{org.base}/tags", content=content, headers=labelled)
        assert r.status_code == 415, f"{encoding}: {r.status_code} {r.text[:300]}"
        assert [e["field"] for e in r.json()["errors"]] == ["header.Content-Encoding"], r.text
    names = {t["name"] for t in org.owner.get(f"{org.base}/tags", params={"limit": 500}).json()["items"]}
    assert "encoded" not in names
    r = client.post(f"{org.base}/tags", content=body, headers={**headers, "content-encoding": "identity"})
    assert r.status_code == 201, r.text
    # a request without a body is not refused for the header (a DELETE answered 415)
    gone = client.delete(f"{org.base}/tags/{r.json()['id']}", headers={**headers, "content-encoding": "gzip"})
    assert gone.status_code == 204, gone.text


def test_a_query_parameter_that_is_not_utf8_is_a_422_naming_it(client, world):
    """``?q=%FF%FE`` and a lone surrogate ``%ED%A0%80`` were read with replacement characters, and the search
    answered 200 with nothing found (QA); UTF-8, percent-encoded or not, is read as before."""
    org, _ = world
    for raw in ("%FF%FE", "%ED%A0%80", "caf%E9"):
        r = org.owner.get(f"{org.base}/prompts?q={raw}&limit=5")
        assert r.status_code == 422, f"{raw}: {r.status_code} {r.text[:200]}"
        assert [e["field"] for e in r.json()["errors"]] == ["query.q"], r.text
    for raw in ("caf%C3%A9", "Linux+Terminal", "%F0%9F%99%82"):
        assert org.owner.get(f"{org.base}/prompts?q={raw}").status_code == 200, raw
