"""A refresh whose answer was lost: retried within the window it gets the same new token; later it revokes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from outputhub.server.deps import get_now
from outputhub.sync.client import refresh_tokens
from tests.support.client import PASSWORD, register


class Clock:
    def __init__(self, client: TestClient) -> None:
        # access tokens are checked against the real clock: moves of this clock stay in its past, inside their
        # ttl. Taken when the test starts: taken at import, a test that ran long after its file was collected
        # (a slow run in several processes) got tokens that had expired on the real clock
        self.now = datetime.now(UTC) - timedelta(minutes=5)
        self._overrides = client.app.dependency_overrides  # type: ignore[attr-defined]
        self._overrides[get_now] = lambda: self.now

    def close(self) -> None:
        self._overrides.pop(get_now, None)


@pytest.fixture
def clock(client: TestClient) -> Iterator[Clock]:
    c = Clock(client)
    yield c
    c.close()


def _login(client: TestClient) -> dict[str, str]:
    user = register(client, name="renew")
    r = client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _refresh(client: TestClient, token: str) -> tuple[int, dict[str, str]]:
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    return r.status_code, r.json()


def _me(client: TestClient, access: str) -> int:
    return client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {access}"}).status_code


def test_a_refresh_retried_after_its_answer_was_lost_gets_the_same_token(
    client: TestClient, clock: Clock
) -> None:
    first = _login(client)["refresh_token"]
    code, lost = _refresh(client, first)  # the server rotated; say the answer never arrived
    assert code == 200
    clock.now += timedelta(seconds=90)
    code, again = _refresh(client, first)
    assert code == 200, again
    assert again["refresh_token"] == lost["refresh_token"]
    assert _me(client, again["access_token"]) == 200
    # the login goes on from there: the next rotation works, and the first token is now two back
    code, third = _refresh(client, again["refresh_token"])
    assert code == 200 and third["refresh_token"] != again["refresh_token"]
    code, problem = _refresh(client, first)
    assert code == 401 and "invalid refresh token" in problem["detail"]
    assert _me(client, third["access_token"]) == 200  # not revoked by a token two rotations back


def test_a_rotated_token_back_after_the_window_revokes_the_login_once_its_successor_was_used(
    client: TestClient, clock: Clock
) -> None:
    first = _login(client)["refresh_token"]
    code, pair = _refresh(client, first)
    assert code == 200
    assert _me(client, pair["access_token"]) == 200  # the client got the answer: it uses it
    clock.now += timedelta(seconds=100)
    assert _refresh(client, first)[0] == 200  # within the window: a retry (two renewals racing)
    clock.now += timedelta(seconds=21)
    code, problem = _refresh(client, first)
    assert code == 401 and "already used" in problem["detail"]
    assert _refresh(client, pair["refresh_token"])[0] == 401  # the whole login is revoked
    assert _me(client, pair["access_token"]) == 401


def test_a_renewal_whose_answer_was_lost_is_retried_any_time_until_its_token_is_used(
    client: TestClient, clock: Clock
) -> None:
    """The next sync after a lost answer may come hours later (QA: a sync 130 s later was logged out): as
    long as nobody used what the lost answer gave, the replaced token is a retry. Using the new access token
    anywhere (here an organization's endpoint, which remembers logins in its access cache) ends that."""
    user = register(client, name="later")
    org = user.post("/api/v1/orgs", json={"name": "Renewals"}).json()["id"]
    clock.now = datetime.now(UTC) - timedelta(hours=3, minutes=1)  # the retry's access token is valid now
    r = client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    first = r.json()["refresh_token"]
    _, lost = _refresh(client, first)
    clock.now += timedelta(hours=3)
    code, again = _refresh(client, first)
    assert code == 200 and again["refresh_token"] == lost["refresh_token"]
    headers = {"Authorization": f"Bearer {again['access_token']}"}
    assert client.get(f"/api/v1/orgs/{org}/tags", headers=headers).status_code == 200
    clock.now += timedelta(hours=1)
    code, problem = _refresh(client, first)  # now a copy: its successor is in use
    assert code == 401 and "already used" in problem["detail"]
    assert client.get(f"/api/v1/orgs/{org}/tags", headers=headers).status_code == 401


class AnswerLostOnce(httpx.BaseTransport):
    """The request reaches the server, which answers; the first answer is lost on the way back."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.sent = inner, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.sent += 1
        if self.sent == 1:
            response.read()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


def test_the_client_retries_a_renewal_whose_answer_was_lost(client: TestClient) -> None:
    first = _login(client)["refresh_token"]
    lossy = AnswerLostOnce(client._transport)  # the real app behind it
    with httpx.Client(transport=lossy) as http:
        pair = refresh_tokens("http://testserver", refresh_token=first, client=http)
    assert lossy.sent == 2
    assert _me(client, pair["access_token"]) == 200
    code, nxt = _refresh(client, pair["refresh_token"])  # the login lives on: the retry's token is current
    assert code == 200 and _me(client, nxt["access_token"]) == 200


def test_a_renewed_token_is_noted_even_after_the_old_one_filled_the_access_cache(
    client: TestClient, clock: Clock
) -> None:
    """QA: a request with the previous access token (a second sync still running on it) filled the access
    cache for the login, the renewed token's requests were answered from it, never noted as seen, and the
    replaced refresh token kept getting the live one: a thief was never caught."""
    user = register(client, name="cached")
    org = user.post("/api/v1/orgs", json={"name": "Cached"}).json()["id"]
    r = client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}).json()
    old_access, first = r["access_token"], r["refresh_token"]
    _, renewed = _refresh(client, first)
    for access in (old_access, renewed["access_token"], renewed["access_token"]):
        tags = client.get(f"/api/v1/orgs/{org}/tags", headers={"Authorization": f"Bearer {access}"})
        assert tags.status_code == 200
    clock.now += timedelta(seconds=121)
    code, problem = _refresh(client, first)
    assert code == 401 and "already used" in problem["detail"]


def test_noting_a_renewal_seen_in_a_reading_request_after_another_write(app, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    """CI: the first GET with a renewed token noted it seen inside its own reading transaction; on SQLite
    that cannot take the write lock once another writer has committed since it began, and the request
    failed with 503 "database unavailable". The note is now a write of its own there."""
    import uuid

    from sqlalchemy import select, update

    from outputhub.server.api.auth.service import note_rotation_seen
    from outputhub.server.storage.database import unit_of_work
    from outputhub.server.storage.tables import AuthSession

    r = _login(client)
    _, renewed = _refresh(client, r["refresh_token"])
    session_id = uuid.UUID(hex=renewed["refresh_token"].partition(".")[0])
    factory = app.state.services.session_factory
    with unit_of_work(factory, read_only=True) as reading:
        seen = reading.execute(select(AuthSession.rotation_seen).where(AuthSession.id == session_id)).scalar()
        assert seen is False  # the reading transaction has begun
        with unit_of_work(factory) as writing:  # another writer commits meanwhile
            writing.execute(
                update(AuthSession).where(AuthSession.id == session_id).values(last_used_at=datetime.now(UTC))
            )
        note_rotation_seen(reading, session_id=session_id, claimed=1, stored=1, seen=False)
    with unit_of_work(factory, read_only=True) as check:
        assert check.get(AuthSession, session_id).rotation_seen is True  # type: ignore[union-attr]
