"""Standard Webhooks signatures (https://www.standardwebhooks.com): ``whsec_`` secrets, HMAC-SHA256.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; ``webhook-signature`` carries one
``v1,<base64 signature>`` per valid secret, separated by spaces (several during a secret rotation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), content, hashlib.sha256).digest()).decode()


def signature_header(secrets_: list[str], *, msg_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets_)


def headers_for(secrets_: list[str], *, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets_, msg_id=msg_id, timestamp=timestamp, body=body),
        "content-type": "application/json",
    }


def verify(secret: str, *, headers: dict[str, str], body: bytes, now: int, tolerance: int = 300) -> bool:
    """What a receiver does (also in docs/cache-jobs-webhooks.md): any one matching signature is enough."""
    msg_id, ts = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not msg_id or not ts.isdigit() or abs(now - int(ts)) > tolerance:
        return False
    expected = sign(secret, msg_id=msg_id, timestamp=int(ts), body=body)
    return any(
        hmac.compare_digest(expected, candidate) for candidate in headers.get("webhook-signature", "").split()
    )
