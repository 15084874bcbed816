"""Answers are compressed for clients that accept it (zstd first), and decode to the same JSON."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import zstandard
from fastapi.testclient import TestClient

from outputhub.server.main import create_app
from tests.conftest import make_settings
from tests.support.client import new_org, seed_library


def _pull(client: TestClient, base: str, token: str, encoding: str) -> tuple[dict[str, str], bytes]:
    """The raw answer of a pull (not decoded by the client), and its headers."""
    with client.stream(
        "GET",
        f"{base}/sync/changes",
        params={"protocol": 3, "since": 0, "limit": 1000},
        headers={"Authorization": f"Bearer {token}", "Accept-Encoding": encoding},
    ) as response:
        assert response.status_code == 200
        return dict(response.headers), b"".join(response.iter_raw())


def test_a_pull_travels_compressed_and_decodes_to_the_same_page(client: TestClient) -> None:
    org = new_org(client)
    ids = seed_library(org)
    for n in range(20):
        made = org.owner.post(
            f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": f"Output {n}.\n" * 200}
        )
        assert made.status_code == 201, made.text
    plain_headers, plain = _pull(client, org.base, org.owner.token, "identity")
    assert "content-encoding" not in plain_headers
    zstd_headers, packed = _pull(client, org.base, org.owner.token, "gzip, br, zstd")
    assert zstd_headers["content-encoding"] == "zstd"
    assert "accept-encoding" in zstd_headers["vary"].lower()
    assert len(packed) * 4 < len(plain)
    unpacked = zstandard.ZstdDecompressor().decompressobj().decompress(packed)
    assert orjson.loads(unpacked) == orjson.loads(plain)
    gzip_headers, _ = _pull(client, org.base, org.owner.token, "gzip")
    assert gzip_headers["content-encoding"] == "gzip"
    # the sync client (httpx) asks for it and decodes it on its own
    auto = org.owner.get(f"{org.base}/sync/changes", params={"protocol": 3, "since": 0, "limit": 1000})
    assert auto.headers["content-encoding"] == "zstd" and auto.json() == orjson.loads(plain)


def test_compression_can_be_left_to_a_proxy(tmp_path: Path) -> None:
    settings = make_settings("sqlite", tmp=tmp_path, pg_url=None)
    settings = settings.model_copy(update={"compress_responses": False})
    with TestClient(create_app(settings)) as plain_client:
        org = new_org(plain_client)
        seed_library(org)
        headers, _ = _pull(plain_client, org.base, org.owner.token, "zstd")
        assert "content-encoding" not in headers


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
def test_a_problem_still_names_the_field_for_a_client_that_accepts_compression(
    client: TestClient, encoding: str
) -> None:
    org = new_org(client)
    r = client.post(
        f"{org.base}/prompts",
        json={"title": "x" * 5000, "body": ""},
        headers={**org.owner.headers, "Accept-Encoding": encoding},
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "title" in r.json()["errors"][0]["field"]
