"""Registration, login, token refresh, logout. Sessions are rows: logout and reuse detection revoke them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from outputhub.common.errors import AuthenticationError, DuplicateError
from outputhub.common.ids import new_uuid
from outputhub.common.schemas import RegisterRequest, TokenPair
from outputhub.server.security import (
    TokenSigner,
    digest,
    hash_password,
    needs_rehash,
    new_secret,
    verify_password,
)
from outputhub.server.storage.database import write_from
from outputhub.server.storage.tables import AuthSession, User


class RefreshTokenReusedError(AuthenticationError):
    """A rotated refresh token came back: someone holds a copy. The caller revokes the session for good."""

    def __init__(self, session_id: uuid.UUID) -> None:
        super().__init__("refresh token was already used; the session is revoked, log in again")
        self.session_id = session_id


@dataclass(frozen=True)
class AuthPolicy:
    signer: TokenSigner
    refresh_ttl: timedelta
    refresh_retry: timedelta
    """How long after a rotation the token it replaced may come back as a retry and get the same new token
    again, even if the new one's access tokens were used (two renewals racing); after that it may only while
    they were not (the answer was lost), else it counts as a stolen copy that revokes the login."""


def register(session: Session, *, data: RegisterRequest, now: datetime) -> User:
    email = data.email.lower()
    if session.execute(select(User.id).where(User.email == email)).first():
        raise DuplicateError("body.email", email)
    user = User(
        id=new_uuid(),
        email=email,
        display_name=data.display_name,
        password_hash=hash_password(data.password),
        is_active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    session.flush()
    return user


def _issue(session: Session, *, user: User, policy: AuthPolicy, now: datetime) -> TokenPair:
    refresh = new_secret()
    auth_session = AuthSession(
        id=new_uuid(),
        user_id=user.id,
        refresh_hash=digest(refresh),
        created_at=now,
        expires_at=now + policy.refresh_ttl,
        last_used_at=now,
    )
    session.add(auth_session)
    session.flush()
    return TokenPair(
        access_token=policy.signer.issue(user_id=user.id, session_id=auth_session.id, now=now),
        refresh_token=f"{auth_session.id.hex}.{refresh}",
        expires_in=int(policy.signer.ttl.total_seconds()),
    )


def login(session: Session, *, email: str, password: str, policy: AuthPolicy, now: datetime) -> TokenPair:
    user = session.execute(select(User).where(User.email == email.lower())).scalar_one_or_none()
    if (
        not verify_password(user.password_hash if user else None, password)
        or user is None
        or not user.is_active
    ):
        raise AuthenticationError("wrong email or password")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return _issue(session, user=user, policy=policy, now=now)


def refresh(session: Session, *, refresh_token: str, policy: AuthPolicy, now: datetime) -> TokenPair:
    """Rotate the refresh token. Presenting the token just replaced is a retry of that rotation while no
    access token it gave was used (its answer was lost: a dropped connection, a killed process), or within
    ``policy.refresh_retry`` of it: it gets the same new refresh token again, which is derived from the one
    it replaces, so a retry is answered alike without storing the answer. Otherwise a replaced token coming
    back is a stolen copy, and the login is revoked."""
    session_hex, _, secret = refresh_token.partition(".")
    try:
        session_id = uuid.UUID(hex=session_hex)
    except ValueError as exc:
        raise AuthenticationError("invalid refresh token") from exc
    auth_session = session.get(AuthSession, session_id)
    if auth_session is None or auth_session.revoked_at is not None or auth_session.expires_at <= now:
        raise AuthenticationError("refresh token expired or revoked; log in again")
    hashed = digest(secret)
    successor = policy.signer.derive(purpose="refresh-rotation", value=secret)
    retried = hashed == auth_session.previous_refresh_hash
    if retried and (
        (auth_session.rotation_seen and now - auth_session.last_used_at > policy.refresh_retry)
        or digest(successor) != auth_session.refresh_hash  # rotated before successors were derived
    ):
        raise RefreshTokenReusedError(auth_session.id)
    if not retried and hashed != auth_session.refresh_hash:
        raise AuthenticationError("invalid refresh token")
    user = session.get(User, auth_session.user_id)
    if user is None or not user.is_active:
        raise AuthenticationError("account disabled")
    if not retried:  # a retry leaves the rotation, and the time its window counts from, as they are
        auth_session.previous_refresh_hash = auth_session.refresh_hash
        auth_session.refresh_hash = digest(successor)
        auth_session.last_used_at = now
        auth_session.rotation += 1
        auth_session.rotation_seen = False
    return TokenPair(
        access_token=policy.signer.issue(
            user_id=user.id, session_id=auth_session.id, now=now, rotation=auth_session.rotation
        ),
        refresh_token=f"{auth_session.id.hex}.{successor}",
        expires_in=int(policy.signer.ttl.total_seconds()),
    )


def logout(session: Session, *, session_id: uuid.UUID, now: datetime) -> None:
    auth_session = session.get(AuthSession, session_id)
    if auth_session is not None and auth_session.revoked_at is None:
        auth_session.revoked_at = now


def active_user(
    session: Session,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    now: datetime,
    rotation: int | None = None,
) -> User:
    """The user behind a verified access token, if its session is still live (logout revokes at once).
    ``rotation``: the token's ``rot`` claim, noted as seen (see :func:`note_rotation_seen`)."""
    auth_session = session.get(AuthSession, session_id)
    if auth_session is None or auth_session.user_id != user_id or auth_session.revoked_at is not None:
        raise AuthenticationError("session revoked; log in again")
    note_rotation_seen(
        session,
        session_id=session_id,
        claimed=rotation,
        stored=auth_session.rotation,
        seen=auth_session.rotation_seen,
    )
    if auth_session.expires_at <= now:
        raise AuthenticationError("session expired; log in again")
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise AuthenticationError("account disabled")
    return user


def note_rotation_seen(
    session: Session, *, session_id: uuid.UUID, claimed: int | None, stored: int, seen: bool
) -> None:
    """A request used an access token of rotation ``claimed`` (its ``rot`` claim) of a login whose newest
    rotation is ``stored``, noted ``seen`` or not: when it is the newest and not noted yet, its client has
    the rotation's answer, so the refresh token it replaced coming back from now on is a copy (see
    :func:`refresh`). Written once per rotation, by the first request that shows it."""
    if claimed is None or claimed != stored or seen:
        return
    statement = (
        update(AuthSession)
        .where(
            AuthSession.id == session_id,
            AuthSession.rotation == claimed,
            AuthSession.rotation_seen.is_(False),
        )
        .values(rotation_seen=True)
    )
    # the first such request is often a GET: on SQLite its reading transaction cannot write (a 503 in CI)
    write_from(session, statement)
