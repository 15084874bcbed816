"""A lost answer or a connection reset mid-way ended the whole sync with "cannot reach the server" (exit 3),
even after its push had been applied (QA, a proxy faulting single requests). The remote now sends a request
again, twice at most, when its connection broke after it was made; a push sent again is answered once per
op id. A server that cannot be reached at all still fails at once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from outputhub.sync.client import HttpRemote, ServerUnreachableError, SyncClient
from tests.support.client import Org, seed_library
from tests.sync.support import make_device


class LosesAnswers(httpx.BaseTransport):
    """The real app behind it; the answers to the requests numbered in ``lose`` never arrive."""

    def __init__(self, inner: httpx.BaseTransport, lose: set[int]) -> None:
        self.inner, self.lose, self.sent = inner, lose, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.sent += 1
        if self.sent in self.lose:
            response.read()
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
        return response


def test_a_sync_goes_on_over_answers_lost_on_the_way(client, org: Org, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = seed_library(org)
    device = make_device(tmp_path, "flaky", http=client, base_url="", token=org.owner.token, org_id=org.id)

    def sync_losing(lose: set[int]) -> tuple[object, int]:
        lossy = LosesAnswers(client._transport, lose=lose)
        with httpx.Client(transport=lossy, base_url="http://testserver") as http:
            remote = HttpRemote("", token=org.owner.token, org_id=org.id, client=http)
            return SyncClient(device.store, remote, pull_page=2).sync(), lossy.sent

    try:
        report, sent = sync_losing({1, 3})  # a first sync in pages of 2: two pages' answers lost
        assert report.checksum_ok is True and sent > 4  # type: ignore[attr-defined]
        assert device.library.get("prompt", ids["prompt"])["title"] == "Linux Terminal"
        device.library.edit("prompt", ids["prompt"], {"title": "Pushed over a flaky link"})
        report, sent = sync_losing({1})  # the push's answer lost after the server applied it
        assert report.pushed == 1 and report.refused == [] and sent == 2  # type: ignore[attr-defined]
        served = org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()
        assert served["title"] == "Pushed over a flaky link"
        assert device.replica.pending_outbox() == []
        assert org.owner.get(f"{org.base}/sync/conflicts").json() == [], "the push sent again applied once"
    finally:
        device.replica.close()


def test_a_server_that_cannot_be_reached_fails_at_once() -> None:
    remote = HttpRemote("http://127.0.0.1:9", token="t", org_id="o")
    try:
        with pytest.raises(ServerUnreachableError, match="nothing answers at that address"):
            remote.checksums()
    finally:
        remote.close()


def test_a_server_that_does_not_answer_is_waited_for_once() -> None:
    """A server that takes the connection and never answers: the request was sent twice more after each
    timeout, so the desktop showed "Syncing…" for three timeouts (93 s) and then said it "cannot reach" a
    server it had reached (QA). A timeout is not sent again (a slow server is not helped by more requests),
    and the message says the server did not answer in time."""
    import socket
    import threading
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)  # read nothing, answer nothing

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    remote = HttpRemote(
        f"http://127.0.0.1:{port}", token="t", org_id="o", client=httpx.Client(timeout=0.5)
    )
    try:
        start = time.monotonic()
        with pytest.raises(ServerUnreachableError, match="did not answer within"):
            remote.checksums()
        assert time.monotonic() - start < 1.5  # one timeout, not three plus the pauses
        assert len(accepted) == 1
    finally:
        remote.close()
        listener.close()
        for conn in accepted:
            conn.close()
