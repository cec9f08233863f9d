"""`v1 Status` error bodies, worded exactly like kube-apiserver's (clients match on them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ._util import JSON, go_quote


def status_body(
    code: int, reason: str | None, message: str | None, details: JSON | None = None, *, success: bool = False
) -> JSON:
    """A Status in the server's field order (kind, apiVersion, metadata, status, message, reason, ...)."""
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if success else "Failure",
    }
    if message is not None:
        body["message"] = message
    if reason is not None:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    if code:
        body["code"] = code
    return body


class ApiError(Exception):
    """An API answer that is a Failure Status; raised anywhere in request handling."""

    def __init__(
        self,
        code: int,
        reason: str | None,
        message: str,
        details: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> JSON:
        return status_body(self.code, self.reason, self.message, self.details)


def qualified(resource: str, group: str) -> str:
    """`pods` or `roles.rbac.authorization.k8s.io`: how messages name a resource."""
    return f"{resource}.{group}" if group else resource


def _details(name: str | None, resource: str, group: str) -> JSON:
    details: JSON = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = resource
    return details


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        404, "NotFound", f'{qualified(resource, group)} "{name}" not found', _details(name, resource, group)
    )


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(resource, group)} "{name}" already exists',
        _details(name, resource, group),
    )


def conflict(resource: str, name: str, group: str = "", detail: str | None = None) -> ApiError:
    detail = (
        detail
        or "the object has been modified; please apply your changes to the latest version and try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {detail}',
        _details(name, resource, group),
    )


def forbidden(resource: str, name: str | None, group: str, message: str) -> ApiError:
    prefix = qualified(resource, group) + (f' "{name}"' if name else "")
    return ApiError(403, "Forbidden", f"{prefix} is forbidden: {message}", _details(name, resource, group))


def forbidden_by_rbac(
    username: str,
    verb: str,
    resource: str,
    subresource: str,
    group: str,
    namespace: str,
    name: str | None,
) -> ApiError:
    """The authorizer's denial, e.g. `pods "x" is forbidden: User "u" cannot get resource "pods/log" ...`."""
    target = resource + (f"/{subresource}" if subresource else "")
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = f'User "{username}" cannot {verb} resource "{target}" in API group "{group}" {scope}'
    return forbidden(resource, name, group, message)


def forbidden_path(username: str, verb: str, path: str) -> ApiError:
    return ApiError(403, "Forbidden", f'forbidden: User "{username}" cannot {verb} path "{path}"', {})


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def internal_error(message: str) -> ApiError:
    return ApiError(
        500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]}
    )


def method_not_supported(resource: str, group: str, verb: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        _details(None, resource, group),
    )


def page_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


@dataclass(frozen=True)
class Cause:
    """One field.Error: reason, message and field as they appear in `details.causes`."""

    reason: str
    message: str
    field: str

    @property
    def text(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def go_value(value: Any) -> str:
    """How field.Invalid prints a value: strings quoted, numbers bare."""
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def required(field: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", "Required value" + (f": {detail}" if detail else ""), field)


def invalid_value(field: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {go_value(value)}: {detail}", field)


def not_supported(field: str, value: Any, supported: list[str]) -> Cause:
    options = ", ".join(go_quote(s) for s in supported)
    return Cause(
        "FieldValueNotSupported", f"Unsupported value: {go_value(value)}: supported values: {options}", field
    )


def forbidden_field(field: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", field)


def duplicate(field: str, value: Any) -> Cause:
    return Cause("FieldValueDuplicate", f"Duplicate value: {go_value(value)}", field)


def not_found_field(field: str, value: Any) -> Cause:
    return Cause("FieldValueNotFound", f"Not found: {go_value(value)}", field)


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> ApiError:
    """422 Invalid: `Pod "x" is invalid: a: b` or `[a: b, c: d]` with the causes in details."""
    texts = [c.text for c in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details: JSON = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [{"reason": c.reason, "message": c.message, "field": c.field} for c in causes]
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {joined}', details)
