"""Screenshots of the portal's main pages at phone and desktop widths, into ``docs/screenshots/``.

    .venv/bin/python -m bench.portal_screenshots [--out docs/screenshots]

Starts the real app (``create_app``, embedded SQLite in a temporary directory) under uvicorn in a thread,
seeds a demo library through the API (prompts from ``/work/shared/data/awesome-chatgpt-prompts.csv``, custom
GPTs, ten weeks of rated outputs), signs in with Playwright driving Debian's Chromium (``/usr/bin/chromium``;
never ``playwright install``) and saves ``portal-<page>-<width>.png`` for 375x812 and 1440x900.
The live server and the seeding are reused by the browser tests (``tests/browser``).
"""

from __future__ import annotations

import argparse
import csv
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from outputhub.server.deps import get_now
from outputhub.server.main import create_app
from outputhub.server.settings import Settings

REPO = Path(__file__).resolve().parent.parent
CSV_PATH = Path("/work/shared/data/awesome-chatgpt-prompts.csv")
PASSWORD = "portal demo horse battery"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"375": {"width": 375, "height": 812}, "1440": {"width": 1440, "height": 900}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    app: FastAPI


@contextmanager
def live_server(data_dir: Path) -> Iterator[LiveServer]:
    """The real app under uvicorn in a thread, on a free port of 127.0.0.1."""
    app = create_app(Settings(data_dir=data_dir, secret_key="portal-demo-secret-key-0123456789abcdef"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Demo:
    email: str
    org_id: str
    ids: dict[str, str] = field(default_factory=dict)
    prompt_ids: list[str] = field(default_factory=list)
    output_ids: list[str] = field(default_factory=list)


def _sources(limit: int) -> list[tuple[str, str]]:
    with CSV_PATH.open(newline="", encoding="utf-8") as fh:
        rows = [
            (r["act"].strip(), r["prompt"].strip())
            for r in csv.DictReader(fh)
            if r["act"].strip() and r["prompt"].strip() and r["type"].strip().upper() != "IMAGE"
        ]
    return rows[:limit]


def seed_demo(server: LiveServer, *, prompts: int = 36, weeks: int = 10, per_week: int = 40) -> Demo:
    """A realistic library through the API; outputs are spread over ``weeks`` weeks ending this week."""
    rng = random.Random(7)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        email = f"dana-{rng.randrange(10**6)}@northwind.example"
        assert http.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Dana Reyes"}
        ).is_success
        token = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
        http.headers["Authorization"] = f"Bearer {token['access_token']}"
        org = http.post("/api/v1/orgs", json={"name": "Northwind Labs"}).json()
        base = f"/api/v1/orgs/{org['id']}"
        demo = Demo(email=email, org_id=org["id"])

        def lookup(slug: str) -> dict[str, Any]:
            return {i["name"]: i for i in http.get(f"{base}/{slug}", params={"limit": 500}).json()["items"]}

        levels, stages, kinds = (
            lookup("accuracy-levels"),
            lookup("development-stages"),
            lookup("knowledge-types"),
        )
        models, groups = lookup("gpt-models"), lookup("agent-groups")
        for name in ("Research", "Support"):
            groups[name] = http.post(f"{base}/agent-groups", json={"name": name}).json()
        tags = {
            name: http.post(f"{base}/tags", json={"name": name}).json()
            for name in ("backend", "frontend", "data", "writing", "education", "marketing", "ops")
        }
        gpts: dict[str, dict[str, Any]] = {}
        for name, model, group_names, description in (
            ("Code Reviewer", "GPT-4.1", ["General"], "Reviews pull requests and explains risky changes."),
            ("Data Analyst", "GPT-4o", ["Research"], "Turns questions into SQL and charts."),
            (
                "Support Writer",
                "GPT-4o mini",
                ["Support"],
                "Drafts friendly, accurate answers for customers.",
            ),
            ("Tutor", "o3", ["General", "Research"], "Explains concepts step by step, with checks."),
        ):
            gpts[name] = http.post(
                f"{base}/custom-gpts",
                json={
                    "name": name,
                    "description": description,
                    "instructions": f"You are {name}. {description} Ask before assuming.",
                    "gpt_model_id": models[model]["id"],
                    "agent_group_ids": [groups[g]["id"] for g in group_names],
                },
            ).json()
        demo.ids.update({f"gpt:{k}": v["id"] for k, v in gpts.items()})
        stage_names = list(stages)
        for index, (act, text) in enumerate(_sources(prompts)):
            stage = rng.choices(stage_names, weights=(3, 5, 4, 6, 1))[0]
            chosen_tags = rng.sample(list(tags), k=rng.choice((1, 1, 2)))
            created = http.post(
                f"{base}/prompts",
                json={
                    "title": act,
                    "body": text,
                    "description": f"Use it when you need a {act.lower()}.",
                    "development_stage_id": stages[stage]["id"],
                    "tag_ids": [tags[t]["id"] for t in chosen_tags],
                },
            ).json()
            demo.prompt_ids.append(created["id"])
            if index % 3 == 0:  # a second version: tightened wording plus an extra rule
                lines = text.split(". ")
                edited = ". ".join([*lines[:-1], "Answer concisely, in plain language", *lines[-1:]])
                http.patch(
                    f"{base}/prompts/{created['id']}",
                    json={"body": edited + "\nNever invent facts; say when you are unsure."},
                )
        demo.ids["prompt:first"] = demo.prompt_ids[0]
        quality = {
            "Code Reviewer": (1, 2, 4, 8),
            "Data Analyst": (1, 3, 5, 5),
            "Support Writer": (3, 4, 4, 3),
        }
        quality["Tutor"] = (1, 1, 3, 9)
        level_names = list(levels)
        kind_names = list(kinds)
        now = datetime.now(UTC)
        sources = _sources(prompts)
        try:
            for week in range(weeks):
                moment = now - timedelta(weeks=weeks - 1 - week, hours=rng.randrange(0, 72))
                server.app.dependency_overrides[get_now] = lambda moment=moment: moment
                items = []
                for _ in range(per_week + week * 3):
                    p = rng.randrange(len(demo.prompt_ids))
                    gpt = rng.choice(list(gpts))
                    act, text = sources[p]
                    rated = rng.random() > 0.12
                    items.append(
                        {
                            "prompt_id": demo.prompt_ids[p],
                            "custom_gpt_id": gpts[gpt]["id"],
                            "content": f"{gpt} answering as {act}:\n\n{text[:600]}\n\nSummary: done, "
                            "with the assumptions listed above.",
                            "accuracy_level_id": levels[rng.choices(level_names, weights=quality[gpt])[0]][
                                "id"
                            ]
                            if rated
                            else None,
                            "knowledge_type_ids": [
                                kinds[k]["id"] for k in rng.sample(kind_names, k=rng.choice((1, 1, 2)))
                            ],
                            "tag_ids": [
                                tags[t]["id"] for t in rng.sample(list(tags), k=rng.choice((0, 1, 1)))
                            ],
                            "notes": "Checked by the team." if rng.random() > 0.7 else "",
                        }
                    )
                created = http.post(f"{base}/outputs/bulk", json={"items": items})
                assert created.status_code == 201, created.text
                demo.output_ids += [o["id"] for o in created.json()["items"]]
        finally:
            server.app.dependency_overrides.pop(get_now, None)
        return demo


def sign_in(page: Any, server: LiveServer, demo: Demo) -> None:
    page.goto(f"{server.url}/portal/login")
    page.get_by_label("Email").fill(demo.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/portal/orgs")


def pages(demo: Demo) -> dict[str, str]:
    org = f"/portal/orgs/{demo.org_id}"
    return {
        "orgs": "/portal/orgs",
        "prompts": f"{org}/prompts",
        "prompt-diff": f"{org}/prompts/{demo.ids['prompt:first']}#diff",
        "outputs": f"{org}/outputs",
        "output": f"{org}/outputs/{demo.output_ids[-1]}",
        "custom-gpts": f"{org}/custom-gpts",
        "analytics": f"{org}/analytics",
    }


def main(argv: list[str] | None = None) -> int:
    import tempfile

    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, live_server(Path(tmp)) as server:
        demo = seed_demo(server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for width, viewport in VIEWPORTS.items():
                context = browser.new_context(viewport=viewport, device_scale_factor=1)
                page = context.new_page()
                page.goto(f"{server.url}/portal/login")
                page.screenshot(path=str(args.out / f"portal-login-{width}.png"), full_page=True)
                sign_in(page, server, demo)
                for name, path in pages(demo).items():
                    page.goto(server.url + path)
                    target = args.out / f"portal-{name}-{width}.png"
                    page.screenshot(path=str(target), full_page=True)
                    overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
                    print(
                        f"{target.relative_to(REPO) if target.is_relative_to(REPO) else target}"
                        f"  horizontal overflow: {overflow}px"
                    )
                context.close()
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
