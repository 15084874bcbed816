"""Analytics and portal benchmark on a large organization: cold (computed by the database) vs cached.

    .venv/bin/python -m bench.analytics [--quick] [--outputs N] [--database-url postgresql://...]

Builds the real app (``create_app``; embedded SQLite in a temporary directory unless ``--database-url``),
creates an organization, its custom GPTs and the 441 prompts of ``awesome-chatgpt-prompts.csv`` through the
API, then bulk-inserts N outputs (default 200,000; ``--quick`` 20,000) straight through SQLAlchemy Core,
with realistic text (excerpts of the prompts), 1-2 knowledge types and 0-1 tags each, spread over a year.

Then, in process (``TestClient``, no network), for every analytics endpoint: **cold** = the organization's
cache generation bumped before the request, so the database computes the aggregate; **cached** = the same
request again. Also portal pages (analytics, prompts, outputs), cold and cached. Baseline: ``GET /healthz``
in the same run. Results: a table on stdout and ``bench/results/analytics-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert, update

from bench.portal_screenshots import CSV_PATH, _sources
from outputhub.server.main import create_app
from outputhub.server.settings import Settings
from outputhub.server.storage.database import set_tenant, unit_of_work
from outputhub.server.storage.tables import OrgRevision, Output, OutputKnowledgeType, OutputTag

RESULTS = Path(__file__).resolve().parent / "results"
PASSWORD = "bench horse battery staple"
BATCH = 5000


def timed(fn: Callable[[], Any], *, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def seed(client: TestClient, services: Any, *, outputs: int) -> dict[str, Any]:
    rng = random.Random(42)
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Bench"})
    token = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()[
        "access_token"
    ]
    headers = {"Authorization": f"Bearer {token}"}
    org = client.post("/api/v1/orgs", json={"name": "Big Library"}, headers=headers).json()
    base = f"/api/v1/orgs/{org['id']}"

    def items(slug: str) -> list[dict[str, Any]]:
        return client.get(f"{base}/{slug}", params={"limit": 500}, headers=headers).json()["items"]

    levels, stages, kinds = items("accuracy-levels"), items("development-stages"), items("knowledge-types")
    models, groups = items("gpt-models"), items("agent-groups")
    tags = [client.post(f"{base}/tags", json={"name": f"tag-{i}"}, headers=headers).json() for i in range(12)]
    gpts = [
        client.post(
            f"{base}/custom-gpts",
            json={
                "name": f"GPT {i}",
                "gpt_model_id": models[i % len(models)]["id"],
                "agent_group_ids": [groups[0]["id"]],
            },
            headers=headers,
        ).json()
        for i in range(8)
    ]
    sources = _sources(10_000)
    prompt_ids = []
    for act, text in sources:
        r = client.post(
            f"{base}/prompts",
            json={
                "title": act,
                "body": text,
                "development_stage_id": rng.choice(stages)["id"],
                "tag_ids": [rng.choice(tags)["id"]],
            },
            headers=headers,
        )
        prompt_ids.append(uuid.UUID(r.json()["id"]))
    org_id = uuid.UUID(org["id"])
    now = datetime.now(UTC)
    started = time.perf_counter()
    with unit_of_work(services.session_factory) as session:
        set_tenant(session, org_id=org_id)
        revision = (
            session.execute(
                update(OrgRevision)
                .where(OrgRevision.org_id == org_id)
                .values(revision=OrgRevision.revision + outputs)
                .returning(OrgRevision.revision)
            ).scalar_one()
            - outputs
        )
    done = 0
    while done < outputs:
        n = min(BATCH, outputs - done)
        rows, kind_links, tag_links = [], [], []
        for i in range(n):
            p = rng.randrange(len(prompt_ids))
            gpt = gpts[rng.randrange(len(gpts))]
            ident = uuid.uuid4()
            created = now - timedelta(seconds=rng.randrange(365 * 86400))
            text = sources[p][1]
            start = rng.randrange(max(1, len(text) - 400))
            rows.append(
                {
                    "id": ident,
                    "org_id": org_id,
                    "revision": revision + done + i + 1,
                    "deleted": False,
                    "created_at": created,
                    "updated_at": created,
                    "created_by": "bench",
                    "updated_by": "bench",
                    "prompt_id": prompt_ids[p],
                    "content": f"Answer for {sources[p][0]}: {text[start : start + 400]}",
                    "notes": "",
                    "custom_gpt_id": uuid.UUID(gpt["id"]),
                    "gpt_model_id": uuid.UUID(gpt["gpt_model_id"]),
                    "accuracy_level_id": uuid.UUID(rng.choice(levels)["id"]) if rng.random() > 0.15 else None,
                    "produced_at": None,
                }
            )
            for k in rng.sample(kinds, k=rng.choice((1, 1, 2))):
                kind_links.append(
                    {"org_id": org_id, "output_id": ident, "knowledge_type_id": uuid.UUID(k["id"])}
                )
            if rng.random() < 0.6:
                tag_links.append(
                    {"org_id": org_id, "output_id": ident, "tag_id": uuid.UUID(rng.choice(tags)["id"])}
                )
        with unit_of_work(services.session_factory) as session:
            set_tenant(session, org_id=org_id)
            session.execute(insert(Output), rows)
            session.execute(insert(OutputKnowledgeType), kind_links)
            if tag_links:
                session.execute(insert(OutputTag), tag_links)
        done += n
    services.cache.bump(org_id)
    return {
        "org_id": org_id,
        "base": base,
        "headers": headers,
        "email": email,
        "prompts": len(prompt_ids),
        "insert_seconds": time.perf_counter() - started,
        "first_prompt": prompt_ids[0],
    }


ENDPOINTS = (
    ("overview", {}),
    ("accuracy", {"by": "gpt_model"}),
    ("accuracy", {"by": "custom_gpt"}),
    ("accuracy", {"by": "agent_group"}),
    ("accuracy", {"by": "development_stage"}),
    ("knowledge-types", {"bucket": "week"}),
    ("knowledge-types", {"bucket": "day"}),
    ("stage-funnel", {}),
    ("tags", {}),
    ("prompt-ranking", {"order": "best"}),
    ("prompt-ranking", {"order": "worst", "min_outputs": 50}),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 outputs instead of 200,000")
    parser.add_argument("--outputs", type=int, default=None)
    parser.add_argument("--database-url", default=None, help="PostgreSQL (a role without BYPASSRLS)")
    parser.add_argument("--repeat", type=int, default=3, help="cold runs per endpoint (median reported)")
    args = parser.parse_args(argv)
    count = args.outputs or (20_000 if args.quick else 200_000)
    assert CSV_PATH.exists(), CSV_PATH
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            Settings(data_dir=Path(tmp), database_url=args.database_url, secret_key="bench-" + "k" * 40)
        )
        services = app.state.services
        backend = services.engine.dialect.name
        client = TestClient(app)
        print(f"seeding {count:,} outputs on {backend} ...", flush=True)
        info = seed(client, services, outputs=count)
        print(
            f"  {info['prompts']} prompts via the API; outputs inserted in {info['insert_seconds']:.1f} s",
            flush=True,
        )
        headers, base, org_id = info["headers"], info["base"], info["org_id"]
        baseline = statistics.median(timed(lambda: client.get("/healthz"), repeat=50))
        rows: list[dict[str, Any]] = []

        def measure(name: str, get: Callable[[], Any]) -> None:
            def cold() -> None:
                services.cache.bump(org_id)
                r = get()
                assert r.status_code == 200, r.text[:300]

            cold_ms = statistics.median(timed(cold, repeat=args.repeat))
            warm_ms = statistics.median(timed(get, repeat=20))
            rows.append({"name": name, "cold_ms": round(cold_ms, 1), "cached_ms": round(warm_ms, 2)})
            print(
                f"  {name:<52} cold {cold_ms:9.1f} ms   cached {warm_ms:7.2f} ms   "
                f"speed-up {cold_ms / warm_ms:6.0f}x",
                flush=True,
            )

        for path, params in ENDPOINTS:
            label = f"GET analytics/{path}" + (
                f"?{'&'.join(f'{k}={v}' for k, v in params.items())}" if params else ""
            )
            measure(
                label,
                lambda path=path, params=params: client.get(
                    f"{base}/analytics/{path}", params=params, headers=headers
                ),
            )

        # the portal: sign in with a cookie, then render pages
        web = TestClient(app)
        token = re.search(r'name="csrf" value="([^"]+)"', web.get("/portal/login").text).group(1)
        web.post("/portal/login", data={"email": info["email"], "password": PASSWORD, "csrf": token})
        portal = f"/portal/orgs/{org_id}"
        for name, path in (
            ("portal analytics page (7 aggregates, 6 SVG charts)", f"{portal}/analytics"),
            ("portal prompts list (20 per page)", f"{portal}/prompts"),
            ("portal outputs list (20 per page)", f"{portal}/outputs"),
            ("portal outputs list, search 'python'", f"{portal}/outputs?q=python"),
            ("portal prompt page (versions, diff, outputs)", f"{portal}/prompts/{info['first_prompt']}"),
        ):
            measure(name, lambda path=path: web.get(path))
        print(f"  baseline GET /healthz: {baseline:.2f} ms")
        RESULTS.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = RESULTS / f"analytics-{stamp}.json"
        out.write_text(
            json.dumps(
                {
                    "backend": backend,
                    "outputs": count,
                    "prompts": info["prompts"],
                    "insert_seconds": info["insert_seconds"],
                    "baseline_healthz_ms": baseline,
                    "rows": rows,
                },
                indent=2,
            )
        )
        print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
