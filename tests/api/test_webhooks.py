"""Webhooks end to end: registration and validation, signed deliveries to real loopback receivers through the
in-process worker, retries with backoff, timeouts, the delivery log, secret rotation, disabling."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from outputhub.server.api.webhooks import signing
from outputhub.server.events import DomainEvent
from tests.redis.support import build_app, receiver, wait_for
from tests.support.client import Org, add_member, new_org

FAST = {
    "webhook_retry_base_seconds": 0.2,
    "webhook_retry_max_seconds": 0.4,  # 8 attempts in about 2.6 s
    "webhook_timeout_seconds": 1.0,
    "webhook_disable_after_hours": 5 / 3600,  # five seconds of nothing but failures
    "jobs_relay_seconds": 0.2,
    "jobs_worker_threads": 4,
}


@pytest.fixture(scope="module")
def hooks_client(backend, tmp_path_factory, request):
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    app = build_app(backend, tmp=tmp_path_factory.mktemp(f"hooks-{backend}"), pg_url=url, **FAST)
    with TestClient(app) as client:
        yield client
    app.state.services.engine.dispose()


def publish(client: TestClient, org: Org, kind: str = "prompt.created", **after: object) -> str:
    """A committed domain event, as a service emits it (the seam every write path goes through)."""
    entity_id = str(uuid.uuid4())
    event = DomainEvent(
        org_id=uuid.UUID(org.id),
        kind=kind,
        entity=kind.split(".")[0],
        entity_id=entity_id,
        actor=f"user:{org.owner.user_id}",
        at=datetime.now(UTC),
        revision=1,
        after={"title": "hello", **after},
    )
    client.app.state.services.publish([event], {event.org_id})
    return entity_id


def register(org: Org, url: str, events: list[str] | None = None) -> dict:
    r = org.owner.post(f"{org.base}/webhooks", json={"url": url, "event_types": events or []})
    assert r.status_code == 201, r.text
    assert r.json()["secret"].startswith("whsec_")
    return r.json()


def deliveries(org: Org, endpoint_id: str) -> list[dict]:
    r = org.owner.get(f"{org.base}/webhooks/{endpoint_id}/deliveries")
    assert r.status_code == 200, r.text
    return r.json()


def test_bad_urls_and_filters_are_rejected_naming_the_field(hooks_client):
    org = new_org(hooks_client)
    for url in (
        "ftp://example.com/x",
        "not a url",
        "http://",
        "javascript:alert(1)",
        "http://u:p@example.com/",
    ):
        r = org.owner.post(f"{org.base}/webhooks", json={"url": url})
        assert r.status_code == 422, (url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["field"] == "body.url", r.json()
    r = org.owner.post(
        f"{org.base}/webhooks", json={"url": "https://example.com/h", "event_types": ["Prompt!"]}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("body.event_types")
    # a filter naming no event the server sends would make an endpoint that never fires (found by QA)
    for unknown in (["bogus.event"], ["prompt.exploded"], ["widget.*"]):
        r = org.owner.post(
            f"{org.base}/webhooks", json={"url": "https://example.com/h", "event_types": unknown}
        )
        assert r.status_code == 422, (unknown, r.text)
        assert r.json()["errors"][0]["field"].startswith("body.event_types")
    listed = org.owner.get(f"{org.base}/webhooks/event-types").json()
    assert {"tag.created", "prompt.restored", "member.added", "conflict.created"} <= set(listed)
    for known in (["tag.created", "output.*"], ["*"], listed):
        r = org.owner.post(
            f"{org.base}/webhooks", json={"url": "https://example.com/h", "event_types": known}
        )
        assert r.status_code == 201, (known, r.text)
    endpoint = register(org, "https://example.com/h")
    r = org.owner.patch(f"{org.base}/webhooks/{endpoint['id']}", json={"url": "gopher://x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.url"


def test_only_owners_and_admins_manage_webhooks(hooks_client):
    org = new_org(hooks_client)
    editor = add_member(org, "editor")
    admin = add_member(org, "admin")
    assert editor.post(f"{org.base}/webhooks", json={"url": "https://example.com/h"}).status_code == 403
    assert editor.get(f"{org.base}/webhooks").status_code == 403
    assert admin.post(f"{org.base}/webhooks", json={"url": "https://example.com/h"}).status_code == 201
    other = new_org(hooks_client)
    assert other.owner.get(f"{org.base}/webhooks").status_code == 404
    assert [e["url"] for e in org.owner.get(f"{org.base}/webhooks").json()] == ["https://example.com/h"]


def test_signed_delivery_verifies_with_the_standard_webhooks_library(hooks_client):
    org = new_org(hooks_client)
    with receiver() as ok:
        endpoint = register(org, ok.url, ["prompt.*"])
        entity_id = publish(hooks_client, org, "prompt.created")
        publish(hooks_client, org, "output.created")  # filtered out
        wait_for(lambda: ok.received)
        got = ok.received[0]
        # an independent implementation verifies it (and a tampered body fails)
        payload = Webhook(endpoint["secret"]).verify(got.body, got.headers)
        assert payload["type"] == "prompt.created" and payload["data"]["id"] == entity_id
        with pytest.raises(WebhookVerificationError):
            Webhook(endpoint["secret"]).verify(got.body + b" ", got.headers)
        # and so does the documented snippet
        assert signing.verify(endpoint["secret"], headers=got.headers, body=got.body, now=int(got.at))
        assert got.headers["webhook-id"] == payload["id"]
        log = wait_for(lambda: [d for d in deliveries(org, endpoint["id"]) if d["status"] == "succeeded"])
        assert log[0]["attempts"] == 1 and log[0]["attempt_log"][0]["status_code"] == 200
        assert len(deliveries(org, endpoint["id"])) == 1  # the output event did not match the filter
        assert len(ok.received) == 1


def test_failing_receiver_is_retried_with_backoff_until_it_succeeds(hooks_client):
    org = new_org(hooks_client)
    with receiver(lambda n: (500 if n <= 3 else 200, 0.0)) as flaky:
        endpoint = register(org, flaky.url)
        publish(hooks_client, org)
        done = wait_for(lambda: [d for d in deliveries(org, endpoint["id"]) if d["status"] == "succeeded"])
        log = done[0]["attempt_log"]
        assert [a["status_code"] for a in log] == [500, 500, 500, 200]
        gaps = [b.at - a.at for a, b in zip(flaky.received, flaky.received[1:], strict=False)]
        # exponential backoff: waits of 0.2 s then 0.4 s, +-20 % jitter. Load only lengthens a wait, so the
        # floors are checked (the second's floor, 0.32 s, is past the first's ceiling, 0.24 s): comparing
        # the two measured gaps failed when the machine was busy
        assert gaps[0] >= 0.2 * 0.8 - 0.01 and gaps[1] >= 0.4 * 0.8 - 0.01, gaps
        ids = {r.headers["webhook-id"] for r in flaky.received}
        assert len(ids) == 1  # the same message id on every attempt: receivers can deduplicate
    assert org.owner.get(f"{org.base}/webhooks/{endpoint['id']}").json()["enabled"] is True


def test_too_slow_receiver_times_out_and_is_retried(hooks_client):
    org = new_org(hooks_client)
    with receiver(lambda n: (200, 2.5 if n == 1 else 0.0)) as slow:
        endpoint = register(org, slow.url)
        publish(hooks_client, org)
        done = wait_for(lambda: [d for d in deliveries(org, endpoint["id"]) if d["status"] == "succeeded"])
        first, second = done[0]["attempt_log"]
        assert first["status_code"] is None and "timed out" in first["error"]
        assert second["status_code"] == 200


def test_secret_rotation_signs_with_both_secrets(hooks_client):
    org = new_org(hooks_client)
    with receiver() as ok:
        endpoint = register(org, ok.url)
        r = org.owner.post(f"{org.base}/webhooks/{endpoint['id']}/rotate-secret")
        assert r.status_code == 200, r.text
        new_secret = r.json()["secret"]
        assert new_secret != endpoint["secret"]
        publish(hooks_client, org)
        got = wait_for(lambda: ok.received)[0]
        assert len(got.headers["webhook-signature"].split()) == 2
        Webhook(endpoint["secret"]).verify(got.body, got.headers)
        Webhook(new_secret).verify(got.body, got.headers)


def test_endpoint_failing_for_long_is_disabled_and_its_owner_notified(hooks_client):
    org = new_org(hooks_client)
    with receiver(lambda n: (503, 0.0)) as down:
        endpoint = register(org, down.url)

        def disabled() -> bool:
            return not org.owner.get(f"{org.base}/webhooks/{endpoint['id']}").json()["enabled"]

        deadline = time.monotonic() + 30
        while not disabled():  # new messages keep failing; after five seconds of that it is disabled
            assert time.monotonic() < deadline
            publish(hooks_client, org)
            time.sleep(0.5)
        state = org.owner.get(f"{org.base}/webhooks/{endpoint['id']}").json()
        assert "failed" in state["disabled_reason"]
        notes = org.owner.get(f"{org.base}/notifications", params={"unread": True}).json()
        assert any(
            n["kind"] == "webhook.disabled" and n["data"]["endpoint_id"] == endpoint["id"]
            for n in notes["items"]
        )
        # the message is kept with its attempts; nothing more goes to a disabled endpoint
        wait_for(lambda: all(d["status"] in ("failed", "skipped") for d in deliveries(org, endpoint["id"])))
        count, logged = len(down.received), len(deliveries(org, endpoint["id"]))
        publish(hooks_client, org)
        time.sleep(0.5)
        assert len(deliveries(org, endpoint["id"])) == logged
        assert len(down.received) == count
        # re-enabled by its owner, it receives again
        r = org.owner.patch(f"{org.base}/webhooks/{endpoint['id']}", json={"enabled": True})
        assert r.json()["enabled"] is True and r.json()["failing_since"] is None


def test_every_attempt_failing_leaves_a_visible_dead_letter(hooks_client):
    org = new_org(hooks_client)
    up = {"now": False}
    with receiver(lambda n: (200 if up["now"] else 500, 0.0)) as down:
        r = org.owner.post(f"{org.base}/webhooks", json={"url": down.url})
        endpoint = r.json()
        # all 8 attempts end (about 2.6 s) before the endpoint would be disabled (5 s)
        publish(hooks_client, org)
        failed = wait_for(
            lambda: org.owner.get(f"{org.base}/jobs", params={"status": "failed"}).json(), timeout=30
        )
        assert failed[0]["kind"] == "webhook.deliver" and failed[0]["attempts"] == 8
        assert "HTTP 500" in failed[0]["last_error"]
        assert deliveries(org, endpoint["id"])[0]["attempts"] == 8
        assert deliveries(org, endpoint["id"])[0]["status"] == "failed"
        # retried by an admin once the receiver is back, it is sent again and arrives: the retried job
        # ended "done" without sending anything, the delivery still failed (QA)
        up["now"] = True
        retried = org.owner.post(f"{org.base}/jobs/{failed[0]['id']}/retry")
        assert retried.status_code == 200 and retried.json()["status"] in ("pending", "queued", "running")
        wait_for(lambda: deliveries(org, endpoint["id"])[0]["status"] == "succeeded", timeout=30)
        assert len(down.received) == 9 and deliveries(org, endpoint["id"])[0]["attempts"] == 9
    editor = add_member(org, "editor")
    assert editor.get(f"{org.base}/jobs").status_code == 403


def test_payload_shape(hooks_client):
    org = new_org(hooks_client)
    with receiver() as ok:
        register(org, ok.url, ["conflict.created"])
        publish(hooks_client, org, "conflict.created", field="title")
        body = json.loads(wait_for(lambda: ok.received)[0].body)
    assert body["type"] == "conflict.created"
    assert body["data"]["organization_id"] == org.id
    assert body["data"]["object"]["field"] == "title"
