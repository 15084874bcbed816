"""Server and account settings, logging in, and running a sync (the desktop side of the sync client).

Blocking (network): the views call it through the job runner and the ``SyncController``. Settings and
tokens are kept inside the encrypted replica (``Replica.get_setting``), never in a plain file.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from outputhub.common.errors import AuthenticationError, InvalidInputError
from outputhub.desktop.storage import Replica
from outputhub.desktop.storage.sync_store import LOCAL_ORG, ReplicaSyncStore
from outputhub.sync.client import (
    AuthenticationFailedError,
    HttpRemote,
    NotAttachedError,
    NotFoundOnServerError,
    ServerUnreachableError,
    SyncClient,
    SyncError,
    login,
    refresh_tokens,
)
from outputhub.sync.client.remote import check, decoded, transport_problem

INDEX_PHASE: Final = "index"
"""The progress phase of indexing a large pull's records for search, after the sync proper: its first report
(0 done) says the records are stored (the lists can show them); search finds them when it ends."""
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

    @property
    def label(self) -> str:
        """``Acme (owner)``."""
        return f"{self.name} ({self.role})" if self.role else self.name


ChooseOrganization = Callable[[Sequence[Organization], Organization], Organization | None]
"""Asks which organization to attach to: (the account's organizations, the suggested one) -> the chosen
one, or None (cancelled)."""


@dataclass(frozen=True, slots=True)
class Account:
    """A log-in that succeeded, before the replica is attached: who, where, the account's organizations and
    the tokens (kept in memory only until :meth:`SyncService.attach`)."""

    server_url: str
    email: str
    organizations: tuple[Organization, ...]
    attached: Organization | None  # the replica's organization (it keeps it), None when not attached yet
    suggested: Organization  # attached, else the one used before, else the first
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)

    @property
    def needs_choice(self) -> bool:
        """The account belongs to several organizations and the replica belongs to none yet."""
        return self.attached is None and len(self.organizations) > 1


class OrganizationChoiceError(InvalidInputError):
    """Which organization is meant is not known (several, none given, or no match); the message lists them."""

    def __init__(self, message: str, organizations: Sequence[Organization]) -> None:
        super().__init__("organization", f"{message}: {describe_organizations(organizations)}")
        self.organizations = tuple(organizations)


class OrganizationNotChosenError(InvalidInputError):
    """The choice of an organization was cancelled: the replica was left unattached."""

    def __init__(self) -> None:
        super().__init__(
            "organization",
            "no organization was chosen, so this library was not attached to the server and stays on this "
            "computer only; log in again to choose one",
        )


NO_SERVER_TEXT: Final = "Offline: no server set up (Settings)"
LAST_SYNCED: Final = "last_synced_at"
"""The setting that keeps when the library last synced (ISO-8601, UTC)."""

LOGIN_SETTINGS: Final = ("access_token", "refresh_token", "api_key")
"""The saved login, one layout for the desktop and ``outputhub replica``: a refresh token (with the last
access token it gave), or an organization API key (``replica attach --api-key-file``), beside
``server_url``, ``org_id``, ``org_name`` and ``email``. Until 2026-11-30 each kept its own (the command line
``auth_kind`` and ``credential``), and a replica logged in by one was "not attached" or "not logged in" to
the other (QA)."""


def adopt_older_login(replica: Replica) -> None:
    """Move a login ``outputhub replica attach`` saved before 2026-11-30 (``auth_kind``, ``credential``) to
    :data:`LOGIN_SETTINGS`, with the organization the replica is attached to; nothing when there is none."""
    if not replica.get_setting(key="credential"):
        return
    with replica.transaction():
        credential = replica.get_setting(key="credential")
        if not credential:
            return
        by_key = replica.get_setting(key="auth_kind") == "apikey"
        replica.set_setting(key="api_key", value=credential if by_key else None)
        replica.set_setting(key="refresh_token", value=None if by_key else credential)
        replica.set_setting(key="access_token", value=None)
        org_id = ReplicaSyncStore(replica).org_id()
        if org_id != LOCAL_ORG and not replica.get_setting(key="org_id"):
            replica.set_setting(key="org_id", value=org_id)
        for key in ("auth_kind", "credential"):
            replica.set_setting(key=key, value=None)


def describe_organizations(organizations: Sequence[Organization]) -> str:
    """``Acme (owner, id 1f2e...), Beta (member, id 9a8b...)``."""
    return ", ".join(f"{o.name} ({o.role + ', ' if o.role else ''}id {o.id})" for o in organizations)


def find_organization(organizations: Sequence[Organization], wanted: str) -> Organization:
    """The organization whose id is ``wanted``, else the one whose name is (case-insensitive); raises
    :class:`OrganizationChoiceError` listing the choices when none or several match."""
    wanted = wanted.strip()
    by_id = [o for o in organizations if o.id == wanted]
    if by_id:
        return by_id[0]
    by_name = [o for o in organizations if o.name.casefold() == wanted.casefold()]
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        raise OrganizationChoiceError(f"several organizations are called {wanted!r}; give the id", by_name)
    raise OrganizationChoiceError(
        f"this account is not a member of {wanted!r}; its organizations are", organizations
    )


def list_organizations(url: str, access_token: str, *, timeout: float = 30.0) -> list[Organization]:
    """The organizations the account behind ``access_token`` belongs to, with its role in each."""
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/api/v1/orgs",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=timeout,
        )
    except httpx.TransportError as exc:
        raise ServerUnreachableError(f"cannot reach the server at {url}: {transport_problem(exc)}") from exc
    body = decoded(check(response))
    items = body.get("items", body) if isinstance(body, dict) else body
    return [Organization(str(o["id"]), str(o["name"]), str(o.get("role", ""))) for o in items]


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url and not url.startswith(("http://", "https://")):
        raise InvalidInputError("server_url", "the server address starts with http:// or https://")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:  # "http://[::1" was a traceback (QA)
        raise InvalidInputError("server_url", f"the server address is not a URL: {exc}") from None
    return url


def conflict_news(replica: Replica, opened: Sequence[str], closed: Sequence[str]) -> tuple[int, int]:
    """Of the conflicts a sync opened, (how many are new, how many replace one it closed on the same field
    of the same record). A conflict is one pair of writes: when either side is edited again, it is closed and
    the conflict between the newer writes opens under a new id; that is a changed conflict, not a new one."""
    new, changed, _settled = conflict_counts(replica, opened, closed)
    return new, changed


def conflict_counts(replica: Replica, opened: Sequence[str], closed: Sequence[str]) -> tuple[int, int, int]:
    """:func:`conflict_news`' (new, changed), and how many of the conflicts the sync closed none replaced
    (settled: resolved on another workstation, or their record deleted or purged there), from one read of the
    replica's conflicts."""
    unique_closed = list(dict.fromkeys(closed))
    if not opened:
        return 0, 0, len(unique_closed)
    where = {c.id: (c.entity, c.record_id, c.field) for c in replica.list_conflicts(include_resolved=True)}
    # one closed conflict is replaced by one opened on its field: a field a third replica wrote meanwhile
    # gets one more conflict, which is new (QA: "2 changed" where one was replaced and one was new)
    replaced = Counter(where[i] for i in unique_closed if i in where)
    unique = list(dict.fromkeys(opened))
    changed = 0
    for i in unique:
        if replaced[where.get(i)] > 0:
            replaced[where.get(i)] -= 1
            changed += 1
    return len(unique) - changed, changed, len(unique_closed) - changed


def progress_text(phase: str, done: int, total: int | None) -> str:
    """A sync's progress in words: a push counts edits; a pull counts revisions (the records' newest and the
    gaps older edits left), which are not records, so it is a share of the way."""
    if phase == "pull":
        return f"pull {min(100, 100 * done // total)}%" if total else "pull…"
    return f"{phase} {done:,} of {total:,}" if total else f"{phase}…"


class SyncService:
    def __init__(self, *, replica: Replica, http_timeout: float = 30.0, pull_page: int = PULL_PAGE) -> None:
        self._replica = replica
        adopt_older_login(replica)  # once, when the library is opened (not at every read of the settings)
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
            logged_in=any(self._get(key) for key in LOGIN_SETTINGS),
        )

    def configured(self) -> bool:
        s = self.settings()
        return bool(s.server_url and s.org_id and s.logged_in)

    def setup_problem(self) -> str | None:
        """What keeps this library from syncing, as the status bar says it; None when nothing does. A login
        that expired or was logged out is not "no server set up" (the status bar said so; QA)."""
        s = self.settings()
        if s.server_url and s.org_id and not s.logged_in:
            return f"Offline: not logged in to {s.server_url} any more: log in again (Settings)"
        return None if s.server_url and s.org_id and s.logged_in else NO_SERVER_TEXT

    def last_synced(self) -> datetime | None:
        """When this library last synced (kept in it: the status bar said "Not synced yet" after every start
        until the first sync, and "last synced at" never; QA)."""
        text = self._get(LAST_SYNCED)
        try:
            return datetime.fromisoformat(text) if text else None
        except ValueError:
            return None

    def save_settings(self, *, server_url: str, email: str, auto_sync: bool) -> SyncSettings:
        url = normalize_url(server_url)
        with self._replica.transaction():
            if url != self._get("server_url") or email.strip() != self._get("email"):
                for key in (*LOGIN_SETTINGS, "org_id", "org_name"):
                    self._replica.set_setting(key=key, value=None)
            self._replica.set_setting(key="server_url", value=url)
            self._replica.set_setting(key="email", value=email.strip())
            self._replica.set_setting(key="auto_sync", value="on" if auto_sync else "off")
        return self.settings()

    # --- account ------------------------------------------------------------------------------------------

    def authenticate(self, *, server_url: str, email: str, password: str) -> Account:
        """Log in and list the account's organizations (network; nothing is stored yet: see :meth:`attach`).

        A replica attached to an organization keeps it (its data belongs to it): an account that is not a
        member of it is refused."""
        url = normalize_url(server_url)
        if not url:
            raise InvalidInputError("server_url", "enter the server address")
        if not email.strip() or not password:
            raise InvalidInputError("email", "enter your email and password")
        tokens = login(url, email=email.strip(), password=password)
        access = _field(tokens, "access_token")
        orgs = tuple(list_organizations(url, access, timeout=self._timeout))
        if not orgs:
            raise AuthenticationError("this account is not a member of any organization yet")
        attached_id = ReplicaSyncStore(self._replica).org_id()
        attached = None
        if attached_id != LOCAL_ORG:
            attached = next((o for o in orgs if o.id == attached_id), None)
            if attached is None:
                raise InvalidInputError(
                    "email", "this library belongs to an organization this account is not a member of"
                )
        previous = next((o for o in orgs if o.id == self._get("org_id")), None)
        return Account(
            server_url=url,
            email=email.strip(),
            organizations=orgs,
            attached=attached,
            suggested=attached or previous or orgs[0],
            access_token=access,
            refresh_token=_field(tokens, "refresh_token"),
        )

    def attach(
        self, *, account: Account, org: Organization | str | None = None, auto_sync: bool = True
    ) -> SyncSettings:
        """Attach the replica to ``org`` (an :class:`Organization`, or its id or name; None: the replica's
        own, or the account's only one) and keep the login. Offline records made before move into it."""
        if isinstance(org, str):
            org = find_organization(account.organizations, org)
        if org is None:
            if account.needs_choice:
                raise OrganizationChoiceError(
                    "this account belongs to several organizations; choose one", account.organizations
                )
            org = account.suggested
        if org not in account.organizations:
            raise OrganizationChoiceError("choose one of the account's organizations", account.organizations)
        if account.attached is not None and org.id != account.attached.id:
            raise InvalidInputError(
                "organization",
                f"this library belongs to {account.attached.name}; it cannot move to {org.name}",
            )
        with self._replica.transaction():
            ReplicaSyncStore(self._replica).attach(org_id=org.id)
            for key, value in (
                ("server_url", account.server_url),
                ("email", account.email),
                ("access_token", account.access_token),
                ("refresh_token", account.refresh_token),
                ("api_key", None),
                ("org_id", org.id),
                ("org_name", org.name),
                ("auto_sync", "on" if auto_sync else "off"),
            ):
                self._replica.set_setting(key=key, value=value)
        return self.settings()

    def login(
        self,
        *,
        server_url: str,
        email: str,
        password: str,
        auto_sync: bool = True,
        org: str | None = None,
        choose: ChooseOrganization | None = None,
    ) -> SyncSettings:
        """Log in and attach in one go (headless callers; the Settings page calls the two steps itself).

        The organization: the replica's own if it is attached; else ``org`` (id or name); else the account's
        only one; else ``choose(organizations, suggested)`` (None: :class:`OrganizationNotChosenError`, the
        replica stays unattached); else :class:`OrganizationChoiceError` listing them."""
        account = self.authenticate(server_url=server_url, email=email, password=password)
        chosen: Organization | str | None = org
        if chosen is None and account.needs_choice and choose is not None:
            chosen = choose(account.organizations, account.suggested)
            if chosen is None:
                raise OrganizationNotChosenError()
        return self.attach(account=account, org=chosen, auto_sync=auto_sync)

    def logout(self) -> SyncSettings:
        with self._replica.transaction():
            for key in LOGIN_SETTINGS:
                self._replica.set_setting(key=key, value=None)
        return self.settings()

    def conflict_news(self, report: Any) -> tuple[int, int]:
        """(new, changed) among the conflicts ``report`` (a ``SyncReport``) opened: :func:`conflict_news`."""
        return conflict_news(
            self._replica,
            list(getattr(report, "conflicts_opened", ())),
            list(getattr(report, "conflicts_closed", ())),
        )

    def needs_indexing(self) -> bool:
        """A large pull's records wait to be indexed for search (the next sync run, even offline or logged
        out, does it)."""
        return self._replica.search_backlog() > 0

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
        and the server does not answer. Raises the client's ``SyncError``s (messages in words).

        Then, whatever the outcome, indexes for search what a large pull stored without indexing (this
        sync's, or one that stopped: the automatic sync of an offline machine finishes it too), reporting
        the phase :data:`INDEX_PHASE`."""
        try:
            outcome = self._sync(progress=progress, only_if_reachable=only_if_reachable)
            if outcome is not False:
                with contextlib.suppress(Exception):  # a read-only moment must not make a sync fail
                    self._replica.set_setting(key=LAST_SYNCED, value=datetime.now(UTC).isoformat())
        except Exception:
            with contextlib.suppress(Exception):  # the sync's own error is the one to tell
                self.index(progress)
            raise
        self.index(progress)
        return outcome

    def index(self, progress: ProgressCallback | None = None) -> None:
        """Index for search what a large pull stored without indexing (nothing to do: returns at once)."""

        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(INDEX_PHASE, done, total)

        self._replica.catch_up_search_index(progress=report)

    def _sync(self, *, progress: ProgressCallback | None, only_if_reachable: bool) -> Any:
        if only_if_reachable and not self.reachable():
            return False
        s = self.settings()
        if not (s.server_url and s.org_id):
            raise NotAttachedError("log in to a server first (Settings)")
        # a sync that outlasts its access token (a first sync of a large library) renews it and goes on; an
        # API key (a replica attached with one on the command line) is sent as it is
        api_key = self._get("api_key")
        remote = HttpRemote(
            s.server_url,
            token=api_key or self._get("access_token"),
            org_id=s.org_id,
            timeout=self._timeout,
            renew=None if api_key else self._renewed_access_token,
        )
        try:

            def report(phase: str, done: int, total: int | None) -> None:
                if progress is not None:
                    progress(phase, done, total or 0)

            client = SyncClient(ReplicaSyncStore(self._replica), remote, pull_page=self._pull_page)
            try:
                return client.sync(report)
            except NotFoundOnServerError:  # the sync's endpoints are the organization's: it is gone for us
                raise NotFoundOnServerError(
                    f"the organization {s.org_name or s.org_id} is not available to this account any more: "
                    "it was deleted, or you were removed from it (ask its owner). Your local edits are kept "
                    "in this library"
                ) from None
        finally:
            remote.close()

    def _renewed_access_token(self) -> str:
        return renew_saved_login(
            self._replica, self._get("server_url"), gone="your login has expired: log in again in Settings"
        )


def renew_saved_login(
    replica: Replica,
    url: str,
    *,
    gone: str,
    refresh: Callable[..., dict[str, Any]] = refresh_tokens,
) -> str:
    """Swap the saved refresh token (:data:`LOGIN_SETTINGS`) for a new pair (access tokens are short-lived)
    and keep it; the desktop and ``outputhub replica`` renew alike. Sent without holding the replica's write
    lock (edits meanwhile would wait for a slow link): two syncs renewing at once send the same token, which
    the server answers alike (a retry), and the new pair is saved only over the token that was sent, never
    over a newer one another sync saved meanwhile. Raises ``ServerUnreachableError``, or
    ``AuthenticationFailedError(gone)`` with the saved login forgotten when the server refuses it."""
    sent = replica.get_setting(key="refresh_token") or ""
    try:
        body = refresh(url, refresh_token=sent) if sent and url else None
    except ServerUnreachableError:
        raise
    except SyncError:
        body = None
    with replica.transaction():
        still = (replica.get_setting(key="refresh_token") or "") == sent
        if body is not None:
            if still:
                replica.set_setting(key="access_token", value=str(body["access_token"]))
                replica.set_setting(key="refresh_token", value=str(body["refresh_token"]))
            return str(body["access_token"])
        if not still:  # refused, but another sync renewed it meanwhile: theirs stands
            return replica.get_setting(key="access_token") or ""
        for key in ("access_token", "refresh_token"):  # refused: the login is gone
            replica.set_setting(key=key, value=None)
    raise AuthenticationFailedError(gone)


def _field(value: Any, name: str) -> str:
    if isinstance(value, dict):
        return str(value[name])
    return str(getattr(value, name))
