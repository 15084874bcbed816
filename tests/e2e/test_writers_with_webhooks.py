"""Concurrent writers with a webhook registered, against a real ``outputhub serve`` (SQLite, its defaults).

Every write then enqueues a delivery job, and the job relay is kicked as the write's transaction commits,
while its session still holds a pooled connection. Kicks used to wait for the relay lock while the relay
waited for a pooled connection: with six clients writing at once the pool ran dry, requests stalled for the
pool's 30 s timeout and many failed with 500, and the server took minutes to recover (found by QA: 24 of 60
writes failed, 210 s for 60 writes). A kick no longer waits for a running relay; that relay goes round again.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.serve import clean_env, free_port, served

PASSWORD = "a long password"


@pytest.fixture
def hook() -> Iterator[tuple[str, list[float]]]:
    received: list[float] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append(time.monotonic())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()


def test_six_writers_with_a_webhook_all_succeed_and_every_change_is_delivered(
    tmp_path: Path, hook: tuple[str, list[float]]
) -> None:
    url, received = hook
    env = clean_env(
        OUTPUTHUB_DATA_DIR=str(tmp_path / "data"),
        OUTPUTHUB_WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
        OUTPUTHUB_RATE_LIMIT_ENABLED="false",
    )
    with served(env) as (_proc, base):
        api = f"{base}/api/v1"
        httpx.post(
            f"{api}/auth/register", json={"email": "w@example.com", "password": PASSWORD, "display_name": "W"}
        ).raise_for_status()
        token = httpx.post(f"{api}/auth/login", json={"email": "w@example.com", "password": PASSWORD}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        org = httpx.post(f"{api}/orgs", json={"name": "Hooks"}, headers=headers).json()["id"]
        prompt = httpx.post(
            f"{api}/orgs/{org}/prompts", json={"title": "T", "body": "b"}, headers=headers
        ).json()["id"]
        made = httpx.post(
            f"{api}/orgs/{org}/webhooks",
            json={"url": url, "event_types": ["output.created"]},
            headers=headers,
        )
        assert made.status_code == 201, made.text
        answers: Counter[object] = Counter()

        def write() -> None:
            with httpx.Client(timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as c:
                for n in range(10):
                    try:
                        r = c.post(
                            f"{api}/orgs/{org}/outputs",
                            json={"prompt_id": prompt, "content": f"output {n}"},
                            headers=headers,
                        )
                        answers[r.status_code] += 1
                    except httpx.HTTPError as exc:
                        answers[type(exc).__name__] += 1

        threads = [threading.Thread(target=write) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert answers == Counter({201: 60}), answers
        deadline = time.monotonic() + 30
        while len(received) < 60 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(received) == 60, f"{len(received)} of 60 deliveries arrived"
