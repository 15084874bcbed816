"""The server's sync endpoints over HTTP (httpx), implementing ``outputhub.sync.ports.Remote``."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final, TypeVar

import httpx
import orjson

from outputhub.common.errors import PROBLEM_TYPE_BASE
from outputhub.common.sync import PROTOCOL_VERSION, PULL_WITH_PUSH, SUPPORTED_PROTOCOLS, PullAlong
from outputhub.sync.client.errors import (
    AuthenticationFailedError,
    CursorExpiredError,
    NoSuchAddressError,
    NotFoundOnServerError,
    ProtocolMismatchError,
    RequestTooLargeError,
    ServerUnreachableError,
    SyncError,
    SyncPermissionError,
)

API = "/api/v1"
T = TypeVar("T")

_SPEAKS: Final = re.compile(r"speaks \[([0-9, ]+)\]")
"""How a server names the protocols it speaks when it refuses one (``server/api/sync/router.py``)."""


def common_protocol(detail: str, *, ours: frozenset[int] = SUPPORTED_PROTOCOLS) -> int | None:
    """The newest protocol both this client and a server that refused ours speak, from its refusal's
    message; None when it names none we speak."""
    found = _SPEAKS.search(detail)
    if found is None:
        return None
    theirs = {int(v) for v in found.group(1).replace(" ", "").split(",") if v}
    both = theirs & ours
    return max(both) if both else None


_TITLE: Final = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG: Final = re.compile(r"<[^>]+>")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return _text_of(response) or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)
    return str(body)


def _ours(response: httpx.Response) -> bool:
    """Whether an error answer is an Output Hub server's own (a problem of one of its types), not a missing
    route's or another server's."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("type", "")).startswith(PROBLEM_TYPE_BASE)


def _text_of(response: httpx.Response, limit: int = 200) -> str:
    """An answer that is not JSON, in a line: an HTML page's title (or its text without the tags), not the
    page's markup over many lines (QA, a proxy's error page)."""
    text = response.text
    if "html" in response.headers.get("content-type", "") or text.lstrip()[:1] == "<":
        title = _TITLE.search(text)
        text = title.group(1) if title else _TAG.sub(" ", text)
    return " ".join(text.split())[:limit]


def decoded(response: httpx.Response) -> Any:
    """The JSON of a successful answer. An answer that is not JSON (another server at that address, a proxy's
    page, an answer cut short) raises :class:`ServerUnreachableError` saying so, the local edits kept: it
    escaped as a traceback, and with ``--json`` nothing was said on stdout (QA)."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        kind = response.headers.get("content-type") or "no content type"
        said = _text_of(response, 100) or "an empty body"
        asked = f"{response.request.method} {response.request.url.path}"
        raise ServerUnreachableError(
            f"the answer to {asked} could not be read ({response.status_code}, {kind}: {said!r}): an answer "
            "cut short, or not an Output Hub server at that address (check --server)"
        ) from None


def check(response: httpx.Response) -> httpx.Response:
    """Turn an error answer into the matching :class:`SyncError`."""
    status = response.status_code
    if status < 400:
        return response
    detail = _detail(response)
    if status == 401:
        raise AuthenticationFailedError(f"the server did not accept the credentials: {detail}")
    if status == 403:
        raise SyncPermissionError(f"permission denied: {detail}")
    if status == 404:
        if not _ours(response):  # no route there: the address is not an Output Hub server's (QA: it was
            # blamed on the organization)
            url = response.request.url
            raise NoSuchAddressError(
                f"nothing at {url.path} on {url.host}: {detail} (is --server the Output Hub server's "
                "address, e.g. https://hub.example.com, without a path?)"
            )
        raise NotFoundOnServerError(
            f"not found on the server: {detail} (an organization is not found when it was deleted or this "
            "account is no longer a member of it)"
        )
    if status == 410:
        raise CursorExpiredError(detail)
    if status == 422 and "protocol" in detail:
        raise ProtocolMismatchError(f"this client and the server speak different sync protocols: {detail}")
    if status == 413:
        raise RequestTooLargeError(f"the server refused the request as too large: {detail}")
    if status == 429:
        wait = response.headers.get("Retry-After", "a few")
        raise ServerUnreachableError(f"the server is rate limiting this client; retry in {wait} s")
    if status >= 500:
        raise ServerUnreachableError(f"the server failed ({status}): {detail}")
    raise SyncError(f"the server refused the request ({status}): {detail}")


class HttpRemote:
    """One organization on one server, authenticated with an access token or an API key."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        org_id: str,
        client: httpx.Client | None = None,
        timeout: float = 30.0,
        renew: Callable[[], str] | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._org = org_id
        self._client = client or httpx.Client(timeout=timeout)
        self._owns_client = client is None
        self._renew = renew
        """Gives a new access token when the server no longer takes this one (it expired mid-sync)."""
        self._renew_lock = threading.Lock()
        self._use(token)
        self.protocol = PROTOCOL_VERSION
        """The protocol spoken: this client's newest, or the newest an older server speaks too."""

    @property
    def server_url(self) -> str:
        return self._base

    @property
    def org_id(self) -> str:
        return self._org

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _url(self, path: str) -> str:
        return f"{self._base}{API}/orgs/{self._org}/sync{path}"

    def _use(self, token: str) -> None:
        self._headers = {"Authorization": f"Bearer {token}"}
        self._json_headers = {**self._headers, "Content-Type": "application/json"}

    def _send(self, method: str, url: str, *, json_body: Any = None, **kwargs: Any) -> httpx.Response:
        """One request on the shared client (its pooled keep-alive connection); bodies in and out as JSON
        through orjson (several times faster than the standard library on a push of many ops). A 401 with
        ``renew`` set: the token is renewed (once for the requests that met it at once) and the request
        sent again (every request of the sync protocol may be: a push is answered once per op id)."""
        if json_body is not None:
            kwargs["content"] = orjson.dumps(json_body)
        response = self._request(method, url, json_body is not None, **kwargs)
        if response.status_code == 401 and self._renew is not None:
            used = response.request.headers.get("Authorization")
            with self._renew_lock:
                if self._headers["Authorization"] == used:  # not renewed by another thread meanwhile
                    self._use(self._renew())
            response = self._request(method, url, json_body is not None, **kwargs)
        return check(response)

    def _request(self, method: str, url: str, is_json: bool, **kwargs: Any) -> httpx.Response:
        """One request; sent again (twice at most, after :data:`RESEND_DELAYS_S`) when the connection broke
        after it was made: a lost answer or a reset mid-way ended the whole sync on a flaky link (QA), and
        every request of the protocol may be sent again (a push is answered once per op id). A server that
        cannot be reached at all fails at once."""
        headers = self._json_headers if is_json else self._headers
        return _sent(
            lambda: self._client.request(method, url, headers=headers, **kwargs),
            server=self._base,
            pauses=RESEND_DELAYS_S,
        )

    def _negotiated(self, request: Callable[[int], T]) -> T:
        """``request(protocol)``; when the server refuses the protocol (an older server), again once with the
        newest one both speak, which is kept for the next requests. Every protocol this client speaks pulls
        and pushes alike (older ones only send fuller states), so nothing is lost by speaking an older one."""
        try:
            return request(self.protocol)
        except ProtocolMismatchError as exc:
            fallback = common_protocol(str(exc))
            if fallback is None or fallback == self.protocol:
                raise
            self.protocol = fallback
            return request(fallback)

    def pull(
        self,
        *,
        since: int,
        limit: int,
        from_zero: bool = False,
        decoding: AbstractContextManager[object] | None = None,
    ) -> Mapping[str, Any]:
        def request(protocol: int) -> Mapping[str, Any]:
            params: dict[str, Any] = {"protocol": protocol, "since": since, "limit": limit}
            if from_zero and since:
                params["from_zero"] = "true"
            answer = self._send("GET", self._url("/changes"), params=params)
            with decoding or nullcontext():
                return decoded(answer)  # type: ignore[no-any-return]

        return self._negotiated(request)

    def push(
        self,
        *,
        device: str,
        changes: Sequence[Mapping[str, Any]],
        pull: PullAlong | None = None,
    ) -> Mapping[str, Any]:
        def request(protocol: int) -> Mapping[str, Any]:
            body: dict[str, Any] = {"protocol": protocol, "device": device, "changes": list(changes)}
            if pull is not None and protocol >= PULL_WITH_PUSH:  # an older server: pulled apart
                body["pull"] = pull.model_dump()
            return decoded(self._send("POST", self._url("/push"), json_body=body))  # type: ignore[no-any-return]

        return self._negotiated(request)

    def record(self, *, entity: str, record_id: str) -> Mapping[str, Any] | None:
        try:
            return decoded(self._send("GET", self._url(f"/records/{entity}/{record_id}")))  # type: ignore[no-any-return]
        except NotFoundOnServerError:
            return None

    def checksums(self, *, full: bool = False) -> Mapping[str, Any]:
        params = {"full": "true"} if full else None
        return decoded(self._send("GET", self._url("/checksums"), params=params))  # type: ignore[no-any-return]

    def conflicts(self) -> list[dict[str, Any]]:
        return decoded(self._send("GET", self._url("/conflicts")))  # type: ignore[no-any-return]


def transport_problem(exc: httpx.TransportError) -> str:
    """What went wrong on the way to the server, in words (the status bar said "ConnectError"; QA)."""
    if isinstance(exc, httpx.ConnectError):
        return "nothing answers at that address (is the server running, and the address right?)"
    if isinstance(exc, httpx.ConnectTimeout):
        return "the connection timed out (check the network)"
    if isinstance(exc, httpx.TimeoutException):
        return "the connection timed out"
    if isinstance(exc, httpx.ProxyError):
        return "the proxy refused the connection"
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return "the connection broke"
    return f"the connection failed ({exc.__class__.__name__})"


def _sent(send: Callable[[], httpx.Response], *, server: str, pauses: Sequence[float]) -> httpx.Response:
    """``send()``, again after each of ``pauses`` when the connection broke after it was made (an answer
    lost, a reset mid-way); a server that cannot be reached at all fails at once, and so does one that took
    the request and did not answer in time (sent again after each timeout, a hung server kept the desktop
    "Syncing…" for three timeouts; QA). Raises ``ServerUnreachableError``."""
    for pause in (*pauses, None):
        try:
            return send()
        except httpx.ReadTimeout as exc:
            raise ServerUnreachableError(
                f"the server at {server} did not answer within the time allowed ({exc.__class__.__name__}): "
                "it is up but busy or stuck"
            ) from exc
        except httpx.TransportError as exc:
            never_reached = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            if pause is None or never_reached:
                raise ServerUnreachableError(
                    f"cannot reach the server at {server}: {transport_problem(exc)}"
                ) from exc
            time.sleep(pause)
    raise AssertionError("the last pause is None")


RESEND_DELAYS_S: Final = (0.5, 2.0)
"""The pauses before a sync request is sent again after its connection broke (see ``HttpRemote._request``)."""

REFRESH_RETRY_DELAYS_S: Final = (0.5, 2.0)
"""The pauses before a renewal is sent again after the connection failed. The server answers a rotated
refresh token sent again within two minutes with the same new one (its answer may have been lost after it
rotated), so retrying at once keeps the login alive where waiting for the next sync would revoke it."""


def _auth_post(
    base_url: str, path: str, client: httpx.Client | None, *, retry: Sequence[float] = (), **kwargs: Any
) -> dict[str, Any]:
    own = client is None
    http = client or httpx.Client(timeout=30.0)
    try:
        url = f"{base_url.rstrip('/')}{API}/auth/{path}"
        response = _sent(lambda: http.post(url, **kwargs), server=base_url, pauses=retry)
        return decoded(check(response))  # type: ignore[no-any-return]
    finally:
        if own:
            http.close()


def login(base_url: str, *, email: str, password: str, client: httpx.Client | None = None) -> dict[str, Any]:
    """Exchange email and password for tokens (``access_token``, ``refresh_token``)."""
    return _auth_post(base_url, "token", client, data={"username": email, "password": password})


def refresh_tokens(
    base_url: str, *, refresh_token: str, client: httpx.Client | None = None
) -> dict[str, Any]:
    """Swap a refresh token for a new pair (the old one stops working: rotation). A failed connection is
    retried at once, twice (:data:`REFRESH_RETRY_DELAYS_S`)."""
    return _auth_post(
        base_url, "refresh", client, retry=REFRESH_RETRY_DELAYS_S, json={"refresh_token": refresh_token}
    )
