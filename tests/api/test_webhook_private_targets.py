"""With ``webhook_allow_private_targets`` off, no webhook reaches a loopback or private address: the URL's
host is read as an HTTP client reads it (a trailing dot, the integer, hex, octal and short IPv4 forms, IPv4
inside IPv6) and refused with 422 naming ``body.url``; and a delivery checks every address the host resolves
to when it connects, refusing (with the reason recorded) one that resolves to such an address."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_webhooks import FAST, deliveries, publish
from tests.redis.support import build_app, receiver, wait_for
from tests.support.client import new_org

PRIVATE_FORMS = [
    "http://2130706433/x",  # 127.0.0.1 as one integer
    "http://0x7f.1/x",  # hex, short form
    "http://0x7f000001/x",
    "http://0177.0.0.1/x",  # octal
    "http://127.1/x",  # short form
    "http://017700000001/x",
    "http://0/x",  # 0.0.0.0: this host
    "http://0.0.0.0/x",
    "http://localhost./x",  # trailing dot: the same name, fully qualified
    "http://localhost../x",
    "http://LocalHost./x",
    "http://app.localhost./x",
    "http://127.0.0.1./x",
    "http://2130706433./x",
    "http://[::ffff:127.0.0.1]/x",  # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]/x",
    "http://[::1]/x",
    "http://[::]/x",
    "http://10.1.2.3/x",
    "http://0xa.1/x",  # 10.0.0.1
    "http://169.254.169.254/latest",  # cloud metadata
    "http://2852039166/latest",  # the same, as an integer
    "https://[fe80::1]/x",
]


@pytest.fixture(scope="module")
def guarded(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Any]:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    app = build_app(
        backend,
        tmp=tmp_path_factory.mktemp(f"guarded-hooks-{backend}"),
        pg_url=url,
        webhook_allow_private_targets=False,
        **FAST,
    )
    with TestClient(app) as client:
        yield client
    app.state.services.engine.dispose()


@pytest.mark.parametrize("url", PRIVATE_FORMS)
def test_a_private_target_in_any_form_is_refused_naming_the_url(guarded: TestClient, url: str) -> None:
    org = new_org(guarded)
    r = org.owner.post(f"{org.base}/webhooks", json={"url": url})
    assert r.status_code == 422, (url, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == ["body.url"], r.json()
    endpoint = org.owner.post(f"{org.base}/webhooks", json={"url": "https://example.com/h"})
    assert endpoint.status_code == 201, endpoint.text
    r = org.owner.patch(f"{org.base}/webhooks/{endpoint.json()['id']}", json={"url": url})
    assert r.status_code == 422, (url, r.text)
    assert [e["field"] for e in r.json()["errors"]] == ["body.url"], r.json()


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/h",
        "https://hooks.example.com./h",  # a public name with a trailing dot
        "http://93.184.215.14/h",
        "http://1.1.1.1/h",
        "https://[2606:4700:4700::1111]/h",
        "https://0x7f.example.com/h",  # a name whose first label looks like a number
        "https://1password.com/h",
    ],
)
def test_public_targets_are_still_accepted(guarded: TestClient, url: str) -> None:
    org = new_org(guarded)
    r = org.owner.post(f"{org.base}/webhooks", json={"url": url})
    assert r.status_code == 201, (url, r.text)


def test_a_host_that_is_no_address_at_all_is_refused(guarded: TestClient) -> None:
    """A host of numbers that is no IPv4 address (which clients refuse or cannot resolve)."""
    org = new_org(guarded)
    for url in ("http://1.2.3.4.5/x", "http://99999999999/x", "http://256.1.1.1/x", "http://0x100000000/x"):
        r = org.owner.post(f"{org.base}/webhooks", json={"url": url})
        assert r.status_code == 422, (url, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["body.url"], r.json()


def _refused_delivery(client: TestClient, host: str, *, stored_while_allowed: bool) -> str:
    """Register an endpoint at ``host`` (on the receiver's port), publish an event, and return the reason the
    delivery was refused with; the receiver gets nothing."""
    org = new_org(client)
    settings = client.app.state.services.settings
    with receiver() as listening:
        settings.webhook_allow_private_targets = stored_while_allowed  # the API's check, not the delivery's
        try:
            r = org.owner.post(f"{org.base}/webhooks", json={"url": f"http://{host}:{listening.port}/hook"})
        finally:
            settings.webhook_allow_private_targets = False
        assert r.status_code == 201, r.text
        endpoint = r.json()
        publish(client, org, "prompt.created")
        log = wait_for(lambda: [d for d in deliveries(org, endpoint["id"]) if d["status"] == "failed"])
        assert log[0]["attempts"] == 1 and log[0]["attempt_log"][0]["status_code"] is None, log[0]
        time.sleep(0.5)  # a retry would have come by now (FAST: 0.2 s backoff)
        assert [d["attempts"] for d in deliveries(org, endpoint["id"])] == [1]
        assert listening.received == []
        return str(log[0]["last_error"])


def test_a_delivery_to_an_endpoint_stored_at_localhost_is_refused_and_recorded(guarded: TestClient) -> None:
    """An endpoint stored while private targets were allowed (before the operator turned them off) is not
    delivered to any more."""
    reason = _refused_delivery(guarded, "localhost", stored_while_allowed=True)
    assert "localhost" in reason and "private" in reason, reason


def test_a_delivery_to_a_name_resolving_to_loopback_is_refused_and_recorded(
    guarded: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DNS name the URL check cannot judge (a public-looking name whose answer points inside) is refused
    when the delivery resolves it. The name is answered by this test's resolver (loopback and a private
    address), so the test does not depend on this machine's DNS."""
    real = socket.getaddrinfo

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.example.com":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    reason = _refused_delivery(guarded, "hooks.example.com", stored_while_allowed=False)
    assert "resolves to" in reason and "127.0.0.1" in reason and "private" in reason, reason
