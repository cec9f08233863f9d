"""Errors from the Kubernetes API, built from its ``Status`` bodies.

    KubeError
    ├── KubeUnreachable        no connection (DNS, refused, timeout)
    │   └── KubeTLSError       the server's certificate is not trusted / wrong name
    ├── KubeConfigMissing      no API address: no host, no in-cluster account, no kubeconfig
    └── KubeAPIError           an answer with a Status (code, reason, message, details)
        ├── KubeUnauthorized   401: the credentials were rejected
        ├── KubeForbidden      403: RBAC or admission (Pod Security) said no
        ├── KubeNotFound       404
        ├── KubeConflict       409: AlreadyExists / Conflict
        ├── KubeGone           410: Expired resourceVersion
        └── KubeInvalid        400/422: the object was rejected (field causes attached)

Kubernetes' own messages are kept verbatim: operators search for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KubeAPIError",
    "KubeConfigMissing",
    "KubeConflict",
    "KubeError",
    "KubeForbidden",
    "KubeGone",
    "KubeInvalid",
    "KubeNotFound",
    "KubeTLSError",
    "KubeUnauthorized",
    "KubeUnreachable",
    "StatusCause",
    "api_error",
]


class KubeError(Exception):
    """Anything that went wrong talking to Kubernetes."""


class KubeUnreachable(KubeError):
    pass


class KubeTLSError(KubeUnreachable):
    def __init__(self, message: str, *, verify_code: int | None = None) -> None:
        super().__init__(message)
        self.verify_code = verify_code


class KubeConfigMissing(KubeError):
    pass


@dataclass(frozen=True)
class StatusCause:
    reason: str = ""
    message: str = ""
    field: str = ""


@dataclass
class _StatusInfo:
    code: int
    reason: str = ""
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class KubeAPIError(KubeError):
    """An error answer. ``message`` is Kubernetes' text, e.g. ``secrets is forbidden: User ...``."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None, operation: str = ""
    ) -> None:
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}
        self.operation = operation
        prefix = f"{operation}: " if operation else ""
        super().__init__(f"{prefix}{message or reason or code}")

    @property
    def causes(self) -> list[StatusCause]:
        return [
            StatusCause(c.get("reason", ""), c.get("message", ""), c.get("field", ""))
            for c in self.details.get("causes", []) or []
            if isinstance(c, dict)
        ]


class KubeUnauthorized(KubeAPIError):
    pass


class KubeForbidden(KubeAPIError):
    @property
    def is_pod_security(self) -> bool:
        return "violates PodSecurity" in self.message

    @property
    def user(self) -> str | None:
        """The identity Kubernetes saw, from ``User "NAME" cannot ...``."""
        marker = 'User "'
        start = self.message.find(marker)
        if start < 0:
            return None
        end = self.message.find('"', start + len(marker))
        return self.message[start + len(marker) : end] if end > 0 else None


class KubeNotFound(KubeAPIError):
    pass


class KubeConflict(KubeAPIError):
    pass


class KubeGone(KubeAPIError):
    pass


class KubeInvalid(KubeAPIError):
    pass


_BY_CODE: dict[int, type[KubeAPIError]] = {
    400: KubeInvalid,
    401: KubeUnauthorized,
    403: KubeForbidden,
    404: KubeNotFound,
    409: KubeConflict,
    410: KubeGone,
    422: KubeInvalid,
}


def api_error(
    code: int, body: str | bytes | dict[str, Any] | None, *, operation: str = "", reason_phrase: str = ""
) -> KubeAPIError:
    """Build the right error from an HTTP status and a (possibly non-JSON) body."""
    status: dict[str, Any] = {}
    if isinstance(body, dict):
        status = body
    elif body:
        try:
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                status = parsed
        except (ValueError, UnicodeDecodeError):
            text = body.decode(errors="replace") if isinstance(body, bytes) else body
            status = {"message": text.strip()[:500]}
    cls = _BY_CODE.get(code, KubeAPIError)
    return cls(
        int(status.get("code") or code),
        str(status.get("reason") or reason_phrase),
        str(status.get("message") or reason_phrase or ""),
        status.get("details") if isinstance(status.get("details"), dict) else None,
        operation=operation,
    )
