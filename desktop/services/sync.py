"""Server and account settings, logging in, and running a sync (the desktop side of the sync client).

Blocking (network): the views call it through the job runner and the ``SyncController``. Settings and
tokens are kept inside the encrypted replica (``Replica.get_setting``), never in a plain file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from outputhub.common.errors import AuthenticationError, InvalidInputError
from outputhub.desktop.storage import Replica
from outputhub.desktop.storage.sync_store import LOCAL_ORG, ReplicaSyncStore
from outputhub.sync.client import (
    AuthenticationFailedError,
    HttpRemote,
    NotAttachedError,
    ServerUnreachableError,
    SyncClient,
    SyncError,
    SyncReport,
    login,
    refresh_tokens,
)

REACHABLE_TIMEOUT_S: Final = 3.0
PULL_PAGE: Final = 200
"""Records per pull request. Decoding a page's JSON holds the GIL in one C call (~0.15 s for 1,000 records
with their merge state), which would freeze the GUI thread that long; 200 keeps each stall near 30 ms."""
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class SyncSettings:
    server_url: str
    email: str
    org_id: str
    org_name: str
    auto_sync: bool
    logged_in: bool


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    role: str


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url and not url.startswith(("http://", "https://")):
        raise InvalidInputError("server_url", "the server address starts with http:// or https://")
    return url


class SyncService:
    def __init__(self, *, replica: Replica, http_timeout: float = 30.0, pull_page: int = PULL_PAGE) -> None:
        self._replica = replica
        self._timeout = http_timeout
        self._pull_page = pull_page

    # --- settings -----------------------------------------------------------------------------------------

    def _get(self, key: str) -> str:
        return self._replica.get_setting(key=key) or ""

    def settings(self) -> SyncSettings:
        return SyncSettings(
            server_url=self._get("server_url"),
            email=self._get("email"),
            org_id=self._get("org_id"),
            org_name=self._get("org_name"),
            auto_sync=self._get("auto_sync") != "off",
            logged_in=bool(self._get("refresh_token") or self._get("access_token")),
        )

    def configured(self) -> bool:
        s = self.settings()
        return bool(s.server_url and s.org_id and s.logged_in)

    def save_settings(self, *, server_url: str, email: str, auto_sync: bool) -> SyncSettings:
        url = normalize_url(server_url)
        with self._replica.transaction():
            if url != self._get("server_url") or email.strip() != self._get("email"):
                for key in ("access_token", "refresh_token", "org_id", "org_name"):
                    self._replica.set_setting(key=key, value=None)
            self._replica.set_setting(key="server_url", value=url)
            self._replica.set_setting(key="email", value=email.strip())
            self._replica.set_setting(key="auto_sync", value="on" if auto_sync else "off")
        return self.settings()

    # --- account ------------------------------------------------------------------------------------------

    def login(self, *, server_url: str, email: str, password: str, auto_sync: bool = True) -> SyncSettings:
        """Log in, pick the organization (the one used before, else the first), keep the tokens."""
        url = normalize_url(server_url)
        if not url:
            raise InvalidInputError("server_url", "enter the server address")
        if not email.strip() or not password:
            raise InvalidInputError("email", "enter your email and password")
        tokens = login(url, email=email.strip(), password=password)
        access = _field(tokens, "access_token")
        refresh = _field(tokens, "refresh_token")
        orgs = self._organizations(url, access)
        if not orgs:
            raise AuthenticationError("this account is not a member of any organization yet")
        attached = ReplicaSyncStore(self._replica).org_id()
        previous = attached if attached != LOCAL_ORG else self._get("org_id")
        org = next((o for o in orgs if o.id == previous), None)
        if org is None and attached != LOCAL_ORG:
            raise InvalidInputError(
                "email", "this library belongs to an organization this account is not a member of"
            )
        org = org or orgs[0]
        with self._replica.transaction():
            ReplicaSyncStore(self._replica).attach(org_id=org.id)
            for key, value in (
                ("server_url", url),
                ("email", email.strip()),
                ("access_token", access),
                ("refresh_token", refresh),
                ("org_id", org.id),
                ("org_name", org.name),
                ("auto_sync", "on" if auto_sync else "off"),
            ):
                self._replica.set_setting(key=key, value=value)
        return self.settings()

    def logout(self) -> SyncSettings:
        with self._replica.transaction():
            for key in ("access_token", "refresh_token"):
                self._replica.set_setting(key=key, value=None)
        return self.settings()

    def _organizations(self, url: str, access: str) -> list[Organization]:
        response = httpx.get(
            f"{url}/api/v1/orgs", headers={"Authorization": f"Bearer {access}"}, timeout=self._timeout
        )
        response.raise_for_status()
        body = response.json()
        items = body.get("items", body) if isinstance(body, dict) else body
        return [Organization(str(o["id"]), str(o["name"]), str(o.get("role", ""))) for o in items]

    def reachable(self) -> bool:
        url = self._get("server_url")
        if not url:
            return False
        try:
            return httpx.get(f"{url}/healthz", timeout=REACHABLE_TIMEOUT_S).status_code == 200
        except httpx.HTTPError:
            return False

    # --- sync ---------------------------------------------------------------------------------------------

    def sync(self, *, progress: ProgressCallback | None = None, only_if_reachable: bool = False) -> Any:
        """Push, pull, verify; returns the client's ``SyncReport``, or ``False`` when ``only_if_reachable``
        and the server does not answer. Raises the client's ``SyncError``s (messages in words)."""
        if only_if_reachable and not self.reachable():
            return False
        try:
            return self._sync_once(progress)
        except AuthenticationFailedError:
            if not self._refresh_tokens():
                raise
            return self._sync_once(progress)

    def _sync_once(self, progress: ProgressCallback | None) -> SyncReport:
        s = self.settings()
        if not (s.server_url and s.org_id):
            raise NotAttachedError("log in to a server first (Settings)")
        remote = HttpRemote(
            s.server_url, token=self._get("access_token"), org_id=s.org_id, timeout=self._timeout
        )
        try:

            def report(phase: str, done: int, total: int | None) -> None:
                if progress is not None:
                    progress(phase, done, total or 0)

            client = SyncClient(ReplicaSyncStore(self._replica), remote, pull_page=self._pull_page)
            return client.sync(report)
        finally:
            remote.close()

    def _refresh_tokens(self) -> bool:
        """Swap the refresh token for a new pair (access tokens are short-lived); False if refused."""
        refresh, url = self._get("refresh_token"), self._get("server_url")
        if not refresh or not url:
            return False
        try:
            body = refresh_tokens(url, refresh_token=refresh)
        except ServerUnreachableError:
            raise
        except SyncError:
            with self._replica.transaction():
                for key in ("access_token", "refresh_token"):
                    self._replica.set_setting(key=key, value=None)
            raise AuthenticationFailedError("your login has expired: log in again in Settings") from None
        with self._replica.transaction():
            self._replica.set_setting(key="access_token", value=str(body["access_token"]))
            self._replica.set_setting(key="refresh_token", value=str(body["refresh_token"]))
        return True


def _field(value: Any, name: str) -> str:
    if isinstance(value, dict):
        return str(value[name])
    return str(getattr(value, name))
