"""Portal sign-in: a session cookie bound to an auth session row, and CSRF tokens for the two POST forms.

The cookie is ``<auth session id>.<HMAC>`` where the HMAC (keyed with the server's token secret) covers the
session id and the row's refresh-token hash. A portal login creates its own auth session whose refresh
token is never handed out, so the cookie cannot be swapped for API tokens; signing out (or any revocation)
sets ``revoked_at`` and the cookie stops working at once, as API logins do.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request, Response
from sqlalchemy.orm import Session

from outputhub.common.errors import AuthenticationError
from outputhub.server.api.auth import service as auth_service
from outputhub.server.api.auth.service import AuthPolicy
from outputhub.server.storage.tables import AuthSession, User

SESSION_COOKIE = "oh_portal"
CSRF_COOKIE = "oh_csrf"
COOKIE_PATH = "/portal"


@dataclass(frozen=True)
class PortalKeys:
    """The secret the portal signs its cookies with (derived from the server's token secret)."""

    secret: bytes

    @classmethod
    def derive(cls, token_secret: str) -> PortalKeys:
        return cls(secret=hashlib.sha256(b"outputhub-portal-v1:" + token_secret.encode()).digest())

    def session_mac(self, auth_session: AuthSession) -> str:
        message = f"portal:{auth_session.id.hex}:{auth_session.refresh_hash}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def sign_in(
    session: Session, *, keys: PortalKeys, email: str, password: str, policy: AuthPolicy, now: datetime
) -> tuple[str, int]:
    """Check the password, open an auth session; returns the cookie value and its lifetime in seconds."""
    pair = auth_service.login(session, email=email, password=password, policy=policy, now=now)
    session_id = uuid.UUID(hex=pair.refresh_token.partition(".")[0])
    auth_session = session.get(AuthSession, session_id)
    assert auth_session is not None
    return f"{session_id.hex}.{keys.session_mac(auth_session)}", int(policy.refresh_ttl.total_seconds())


def _parse(cookie: str | None) -> tuple[uuid.UUID, str] | None:
    if not cookie or "." not in cookie:
        return None
    session_hex, _, mac = cookie.partition(".")
    try:
        return uuid.UUID(hex=session_hex), mac
    except ValueError:
        return None


def current_user(
    session: Session, *, keys: PortalKeys, cookie: str | None, now: datetime
) -> tuple[User, uuid.UUID]:
    """The signed-in user and their auth session id, or AuthenticationError."""
    parsed = _parse(cookie)
    if parsed is None:
        raise AuthenticationError("not signed in")
    session_id, mac = parsed
    auth_session = session.get(AuthSession, session_id)
    if auth_session is None or not hmac.compare_digest(mac, keys.session_mac(auth_session)):
        raise AuthenticationError("not signed in")
    user = auth_service.active_user(session, user_id=auth_session.user_id, session_id=session_id, now=now)
    return user, session_id


def sign_out(session: Session, *, keys: PortalKeys, cookie: str | None, now: datetime) -> None:
    parsed = _parse(cookie)
    if parsed is None:
        return
    auth_session = session.get(AuthSession, parsed[0])
    if auth_session is not None and hmac.compare_digest(parsed[1], keys.session_mac(auth_session)):
        auth_service.logout(session, session_id=auth_session.id, now=now)


def set_session_cookie(response: Response, request: Request, *, value: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=is_https(request)
    )


# --- CSRF: double submit (a random cookie echoed in a hidden form field), plus an Origin check --------------


def csrf_token(request: Request) -> str:
    """The request's CSRF token: the cookie's, or a new one (``ensure_csrf_cookie`` then sets it)."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) < 32:
        token = getattr(request.state, "new_csrf", None) or secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return token


def ensure_csrf_cookie(request: Request, response: Response) -> None:
    new = getattr(request.state, "new_csrf", None)
    if new:
        response.set_cookie(
            CSRF_COOKIE, new, path=COOKIE_PATH, httponly=True, samesite="strict", secure=is_https(request)
        )


def csrf_ok(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        return False
    origin = request.headers.get("origin")
    if origin and origin != "null":
        expected = f"{request.url.scheme}://{request.url.netloc}"
        return origin == expected
    return True
