"""What can be learned from a bearer token without verifying it, and without ever showing it.

Kubernetes ServiceAccount tokens are JWTs: their payload names the account
(``sub`` = ``system:serviceaccount:NS:NAME``), the issuer and the expiry. That
is enough to tell "expired", "made for another cluster" or "a placeholder"
apart. Nothing here returns or formats the token itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["TokenFacts", "describe_token", "expiry_text", "service_account_of", "token_facts"]

EXPIRY_WARNING_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class TokenFacts:
    """Claims of a JWT bearer token (``is_jwt`` False: not a JWT; other fields empty)."""

    is_jwt: bool
    length: int
    subject: str = ""
    issuer: str = ""
    expires_at: float | None = None  # epoch seconds; None = no expiry claim
    issued_at: float | None = None
    namespace: str = ""  # kubernetes.io claim, or from a legacy token's own claim
    service_account: str = ""

    def __repr__(self) -> str:
        return f"TokenFacts(is_jwt={self.is_jwt}, subject={self.subject!r}, expires_at={self.expires_at!r})"


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def token_facts(token: str) -> TokenFacts:
    """Decode (no signature check) the payload of a JWT; anything else is ``is_jwt=False``."""
    token = token.strip()
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return TokenFacts(False, len(token))
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return TokenFacts(False, len(token))
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return TokenFacts(False, len(token))
    k8s: Any = claims.get("kubernetes.io")
    namespace = ""
    service_account = ""
    if isinstance(k8s, dict):
        namespace = str(k8s.get("namespace") or "")
        sa = k8s.get("serviceaccount")
        if isinstance(sa, dict):
            service_account = str(sa.get("name") or "")
    # legacy Secret-based tokens carry their own claim names
    namespace = namespace or str(claims.get("kubernetes.io/serviceaccount/namespace") or "")
    service_account = service_account or str(
        claims.get("kubernetes.io/serviceaccount/service-account.name") or ""
    )
    subject = str(claims.get("sub") or "")
    if not (namespace and service_account):
        ns, name = service_account_of(subject)
        namespace, service_account = namespace or ns, service_account or name
    return TokenFacts(
        True,
        len(token),
        subject=subject,
        issuer=str(claims.get("iss") or ""),
        expires_at=_number(claims.get("exp")),
        issued_at=_number(claims.get("iat")),
        namespace=namespace,
        service_account=service_account,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def service_account_of(username: str) -> tuple[str, str]:
    """``system:serviceaccount:NS:NAME`` → (NS, NAME); anything else → ("", "")."""
    parts = username.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"] and parts[2] and parts[3]:
        return parts[2], parts[3]
    return "", ""


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds >= 2 * 86400:
        return f"{int(seconds // 86400)} days"
    if seconds >= 2 * 3600:
        return f"{int(seconds // 3600)} hours"
    if seconds >= 120:
        return f"{int(seconds // 60)} minutes"
    return f"{int(seconds)} seconds"


def expiry_text(facts: TokenFacts, now: float | None = None) -> str:
    """``expires 2027-01-02 10:00 UTC (in 40 days)`` / ``expired ... ago`` / ``has no expiry``."""
    if facts.expires_at is None:
        return "has no expiry (a long-lived Secret-based token)"
    now = time.time() if now is None else now
    left = facts.expires_at - now
    if left <= 0:
        return f"expired {_when(facts.expires_at)} ({_span(left)} ago)"
    return f"expires {_when(facts.expires_at)} (in {_span(left)})"


def describe_token(token: str, now: float | None = None) -> str:
    """One line about the token that is safe to print: kind, subject, issuer, expiry. Never the token."""
    facts = token_facts(token)
    if not facts.is_jwt:
        return (
            f"the token is not a JWT ({facts.length} characters): not a Kubernetes ServiceAccount token, "
            "perhaps a placeholder"
        )
    who = facts.subject or "no subject"
    issuer = f", issuer {facts.issuer}" if facts.issuer else ""
    return f"JWT for {who}{issuer}; {expiry_text(facts, now)}"
