"""Authentication: static bearer tokens, ServiceAccount tokens (TokenRequest), admin client certificates."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ._util import new_uid

AUTHENTICATED = "system:authenticated"
ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class UserInfo:
    """Who a request runs as; `extra` as SelfSubjectReview shows it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)

    def __repr__(self) -> str:  # never print credential ids
        return f"UserInfo({self.username!r}, groups={list(self.groups)!r})"

    @property
    def is_anonymous(self) -> bool:
        return self.username == "system:anonymous"


ANONYMOUS = UserInfo("system:anonymous", "", ("system:unauthenticated",))


@dataclass
class _SaToken:
    namespace: str
    name: str
    sa_uid: str
    jti: str
    expires: float
    pod: tuple[str, str] | None  # (name, uid) for pod-bound tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Authenticator:
    """Maps credentials to users. Tokens are never logged or put in exceptions."""

    def __init__(
        self, sa_exists: Callable[[str, str, str], bool], pod_exists: Callable[[str, str, str], bool]
    ) -> None:
        self._lock = threading.Lock()
        self._static: dict[str, UserInfo] = {}
        self._sa: dict[str, _SaToken] = {}
        self._key = secrets.token_bytes(32)
        self._sa_exists = sa_exists
        self._pod_exists = pod_exists

    def add_token(
        self, token: str, username: str, groups: list[str] | tuple[str, ...] = (), uid: str = ""
    ) -> None:
        all_groups = tuple(groups) + (() if AUTHENTICATED in groups else (AUTHENTICATED,))
        if username.startswith("system:serviceaccount:"):
            ns = username.split(":")[2]
            extra_groups = ("system:serviceaccounts", f"system:serviceaccounts:{ns}")
            all_groups = tuple(g for g in extra_groups if g not in all_groups) + all_groups
        with self._lock:
            self._static[token] = UserInfo(username, uid, all_groups, {})

    def revoke(self, token: str) -> None:
        with self._lock:
            self._static.pop(token, None)
            self._sa.pop(token, None)

    def issue_sa_token(
        self,
        namespace: str,
        name: str,
        sa_uid: str,
        expiration_seconds: int,
        audiences: list[str],
        pod: tuple[str, str] | None = None,
    ) -> tuple[str, float]:
        """A JWT-shaped TokenRequest token (HS256 over a per-server key); returns (token, expiry epoch)."""
        now = int(time.time())
        jti = new_uid()
        claims: dict[str, object] = {
            "aud": audiences or [ISSUER],
            "exp": now + expiration_seconds,
            "iat": now,
            "iss": ISSUER,
            "jti": jti,
            "kubernetes.io": {
                "namespace": namespace,
                **({"pod": {"name": pod[0], "uid": pod[1]}} if pod else {}),
                "serviceaccount": {"name": name, "uid": sa_uid},
            },
            "nbf": now,
            "sub": f"system:serviceaccount:{namespace}:{name}",
        }
        header = _b64(json.dumps({"alg": "HS256", "kid": "kube-double"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = _b64(hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        token = f"{header}.{payload}.{signature}"
        with self._lock:
            self._sa[token] = _SaToken(namespace, name, sa_uid, jti, now + expiration_seconds, pod)
        return token, float(now + expiration_seconds)

    def authenticate_token(self, token: str) -> UserInfo | None:
        """The user for a bearer token, or None (→ 401)."""
        with self._lock:
            static = self._static.get(token)
            sa = self._sa.get(token)
        if static is not None:
            return static
        if sa is None or sa.expires < time.time():
            return None
        if not self._sa_exists(sa.namespace, sa.name, sa.sa_uid):
            return None
        if sa.pod is not None and not self._pod_exists(sa.namespace, sa.pod[0], sa.pod[1]):
            return None
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{sa.namespace}", AUTHENTICATED)
        extra = {"authentication.kubernetes.io/credential-id": [f"JTI={sa.jti}"]}
        if sa.pod is not None:
            extra["authentication.kubernetes.io/pod-name"] = [sa.pod[0]]
            extra["authentication.kubernetes.io/pod-uid"] = [sa.pod[1]]
        return UserInfo(f"system:serviceaccount:{sa.namespace}:{sa.name}", sa.sa_uid, groups, extra)

    @staticmethod
    def from_certificate(subject: tuple[tuple[tuple[str, str], ...], ...], fingerprint: str) -> UserInfo:
        """x509 client certificate: CN is the user, each O a group."""
        cn = ""
        orgs: list[str] = []
        for rdn in subject:
            for key, value in rdn:
                if key == "commonName":
                    cn = value
                elif key == "organizationName":
                    orgs.append(value)
        return UserInfo(
            cn,
            "",
            (*orgs, AUTHENTICATED),
            {"authentication.kubernetes.io/credential-id": [f"X509SHA256={fingerprint}"]},
        )
