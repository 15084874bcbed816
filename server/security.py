"""Passwords (argon2id), access tokens (signed JWT), and opaque secrets (hashed at rest)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from outputhub.common.errors import AuthenticationError

# OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB, t=2, p=1.
PASSWORD_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_DUMMY_HASH = PASSWORD_HASHER.hash("timing-equaliser-not-a-password")


def hash_password(password: str) -> str:
    return PASSWORD_HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user exists (hash a dummy when there is no stored hash)."""
    try:
        return PASSWORD_HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return PASSWORD_HASHER.check_needs_rehash(password_hash)


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret (API keys, refresh tokens, invitations): enough, and fast."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TenantSecret:
    """A secret that names its organization: ``<kind>_<org id hex>_<random>``.

    Naming the organization lets the server set the tenant *before* looking the secret up, so the lookup
    itself runs under row-level security.
    """

    kind: str
    org_id: uuid.UUID
    secret: str

    def __str__(self) -> str:
        return f"{self.kind}_{self.org_id.hex}_{self.secret}"

    @classmethod
    def new(cls, *, kind: str, org_id: uuid.UUID) -> TenantSecret:
        return cls(kind=kind, org_id=org_id, secret=new_secret())

    @classmethod
    def parse(cls, value: str, *, kind: str) -> TenantSecret | None:
        parts = value.split("_", 2)
        if len(parts) != 3 or parts[0] != kind:
            return None
        try:
            org_id = uuid.UUID(hex=parts[1])
        except ValueError:
            return None
        return cls(kind=kind, org_id=org_id, secret=parts[2])


API_KEY_KIND = "ohk"
INVITATION_KIND = "ohi"


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime
    rotation: int | None = None
    """The login's rotation that issued the token (``AuthSession.rotation``); None in tokens issued before."""


class TokenSigner:
    VERIFIED_MAX = 4096
    """How many verified tokens :meth:`verify` remembers (forgets them all when full)."""

    def __init__(self, *, secret: str, ttl: timedelta) -> None:
        self._secret = secret
        self.ttl = ttl
        # token text -> its claims and expiry: every request presents the same token again (the rate limiter
        # and the tenant dependency both verify it), and the signature of a given text cannot change
        self._verified: dict[str, tuple[AccessClaims, float]] = {}

    def issue(self, *, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime, rotation: int = 0) -> str:
        payload = {
            "sub": str(user_id),
            "sid": str(session_id),
            "rot": rotation,
            "iat": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "typ": "access",
        }
        return jwt.encode(payload, self._secret, algorithm="HS256")

    def derive(self, *, purpose: str, value: str) -> str:
        """A secret only this server can compute from ``value``: HMAC-SHA256 under the signing key, as
        URL-safe text as long as :func:`new_secret`'s. The same ``value`` gives the same secret, so an answer
        can be given again without storing what it said (a refresh retried after its answer was lost)."""
        mac = hmac.new(self._secret.encode(), f"{purpose}\0{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def verify(self, token: str) -> AccessClaims:
        known = self._verified.get(token)
        if known is not None:
            claims, expires = known
            if time.time() < expires:  # PyJWT's own rule: expired once now >= exp
                return claims
            self._verified.pop(token, None)
            raise AuthenticationError("access token expired; refresh it")
        claims = self._decode(token)
        if len(self._verified) >= self.VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = (claims, claims.expires_at.timestamp())
        return claims

    def _decode(self, token: str) -> AccessClaims:
        try:
            payload = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub", "sid"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("access token expired; refresh it") from exc
        except jwt.PyJWTError as exc:
            raise AuthenticationError("invalid access token") from exc
        if payload.get("typ") != "access":
            raise AuthenticationError("invalid access token")
        try:
            return AccessClaims(
                user_id=uuid.UUID(payload["sub"]),
                session_id=uuid.UUID(payload["sid"]),
                expires_at=datetime.fromtimestamp(payload["exp"]).astimezone(),
                rotation=payload["rot"] if isinstance(payload.get("rot"), int) else None,
            )
        except (ValueError, TypeError) as exc:
            raise AuthenticationError("invalid access token") from exc


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
