"""Integer parameters that reach 32-bit columns (prompt versions, lookup positions) are bounded by what those
columns hold: a larger number is a 422 naming the parameter on every backend, not PostgreSQL's "integer out of
range" as a 500 (the columns are INTEGER, int4, on PostgreSQL; SQLite's hold 64 bits)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.client import PASSWORD, Org, cursor, new_org, seed_library

INT4_MAX = 2**31 - 1
BEYOND = [2**31, 2**32, 2**63 - 1]


@pytest.fixture(scope="module")
def world(client: Any) -> tuple[Org, dict[str, str]]:
    org = new_org(client)
    return org, seed_library(org)


def _problem_field(r: Any) -> list[str]:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return [e["field"] for e in r.json()["errors"]]


@pytest.mark.parametrize("number", BEYOND)
def test_a_version_beyond_32_bits_is_422_naming_it(world: tuple[Org, dict[str, str]], number: int) -> None:
    org, ids = world
    base = f"{org.base}/prompts/{ids['prompt']}"
    r = org.owner.get(f"{base}/versions/{number}")
    assert r.status_code == 422, r.text
    assert _problem_field(r) == ["path.version"]
    r = org.owner.get(f"{base}/diff", params={"from": 1, "to": number})
    assert r.status_code == 422, r.text
    assert _problem_field(r) == ["query.to"]
    r = org.owner.get(f"{base}/diff", params={"from": number, "to": 1})
    assert r.status_code == 422, r.text
    assert _problem_field(r) == ["query.from"]


def test_the_largest_32_bit_version_is_simply_missing(world: tuple[Org, dict[str, str]]) -> None:
    org, ids = world
    base = f"{org.base}/prompts/{ids['prompt']}"
    assert org.owner.get(f"{base}/versions/{INT4_MAX}").status_code == 404
    assert org.owner.get(f"{base}/diff", params={"from": 1, "to": INT4_MAX}).status_code == 404
    assert org.owner.get(f"{base}/versions/1").status_code == 200


@pytest.mark.parametrize("number", [2**31, -(2**31) - 1])
def test_a_position_cursor_beyond_32_bits_is_422(world: tuple[Org, dict[str, str]], number: int) -> None:
    org, _ = world
    shape = {"s": "position", "d": False, "v": number, "i": str(uuid.uuid4())}
    r = org.owner.get(f"{org.base}/development-stages", params={"sort": "position", "cursor": cursor(shape)})
    assert r.status_code == 422, r.text
    assert _problem_field(r) == ["query.cursor"]


def test_the_largest_32_bit_position_in_a_cursor_is_a_page(world: tuple[Org, dict[str, str]]) -> None:
    org, _ = world
    shape = {"s": "position", "d": True, "v": INT4_MAX, "i": str(uuid.uuid4())}
    r = org.owner.get(f"{org.base}/development-stages", params={"sort": "-position", "cursor": cursor(shape)})
    assert r.status_code == 200, r.text
    assert r.json()["items"]


def _portal(client: TestClient, org: Org) -> TestClient:
    web = TestClient(client.app, raise_server_exceptions=False)
    page = web.get("/portal/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None, page.text
    r = web.post(
        "/portal/login",
        data={"email": org.owner.email, "password": PASSWORD, "csrf": token.group(1), "next": ""},
        follow_redirects=False,
    )
    assert r.status_code in (302, 303), r.text
    return web


@pytest.mark.parametrize(("low", "high"), [(1, 2**31), (2**31, 1), (1, 2**63 - 1)])
def test_the_portal_answers_a_version_beyond_32_bits_with_its_422_page(
    client: TestClient, world: tuple[Org, dict[str, str]], low: int, high: int
) -> None:
    org, ids = world
    web = _portal(client, org)
    r = web.get(f"/portal/orgs/{org.id}/prompts/{ids['prompt']}", params={"from": low, "to": high})
    assert r.status_code == 422, r.text[:300]
    assert r.headers["content-type"].startswith("text/html")
