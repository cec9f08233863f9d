"""labelSelector and fieldSelector parsing and matching, with the server's error texts."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ._util import JSON, go_quote
from .errors import ApiError, bad_request


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !
    values: tuple[str, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        return not present


_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def parse_label_selector(text: str) -> list[Requirement]:
    reqs: list[Requirement] = []
    if not text.strip():
        return reqs
    for raw in _split_top(text):
        part = raw.strip()
        match = re.match(r"^(\S+?)\s+(in|notin)\s+\((.*)\)$", part)
        if match:
            key, op, values = match.group(1), match.group(2), match.group(3)
            vals = tuple(v.strip() for v in values.split(",") if v.strip())
            reqs.append(_checked(Requirement(key, op, vals), part))
            continue
        for op in ("!=", "==", "="):
            if op in part:
                key, value = part.split(op, 1)
                reqs.append(
                    _checked(Requirement(key.strip(), "!=" if op == "!=" else "=", (value.strip(),)), part)
                )
                break
        else:
            if part.startswith("!"):
                reqs.append(_checked(Requirement(part[1:].strip(), "!", ()), part))
            else:
                reqs.append(_checked(Requirement(part, "exists", ()), part))
    return reqs


def _checked(req: Requirement, text: str) -> Requirement:
    if not _KEY_RE.match(req.key):
        raise bad_request(
            f"unable to parse requirement: <nil>: Invalid value: {go_quote(req.key)}: "
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character"
        )
    if not req.key or (req.op in ("=", "!=") and " " in req.values[0]):
        raise bad_request(
            f"unable to parse requirement: found '{text}', expected: ',', '=', '!=' or end of string"
        )
    return req


def match_labels(reqs: list[Requirement], obj: JSON) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(r.matches(labels) for r in reqs)


def _get(path: str) -> Callable[[JSON], str]:
    parts = path.split(".")

    def getter(obj: JSON) -> str:
        cur: object = obj
        for part in parts:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)

    return getter


_COMMON = ["metadata.name", "metadata.namespace"]
FIELDS: dict[str, list[str]] = {
    "pods": [
        *_COMMON,
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ],
    "events": [
        *_COMMON,
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ],
    "secrets": [*_COMMON, "type"],
    "namespaces": [*_COMMON, "status.phase"],
    "nodes": [*_COMMON, "spec.unschedulable"],
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str
    value: str
    getter: Callable[[JSON], str]

    def matches(self, obj: JSON) -> bool:
        actual = self.getter(obj)
        return actual == self.value if self.op == "=" else actual != self.value


def parse_field_selector(text: str, resource: str) -> list[FieldRequirement]:
    reqs: list[FieldRequirement] = []
    if not text.strip():
        return reqs
    allowed = FIELDS.get(resource, _COMMON)
    for raw in text.split(","):
        part = raw.strip()
        for op in ("!=", "==", "="):
            if op in part:
                field, value = part.split(op, 1)
                field = field.strip()
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        if field not in allowed:
            if resource in FIELDS:
                raise bad_request(f"field label not supported: {field}")
            quoted = ", ".join(f'"{a}"' for a in allowed)
            raise bad_request(f'"{field}" is not a known field selector: only {quoted}')
        getter = _source_getter if field == "source" else _get(field)
        reqs.append(FieldRequirement(field, "!=" if op == "!=" else "=", value, getter))
    return reqs


def _source_getter(obj: JSON) -> str:
    return str((obj.get("source") or {}).get("component") or obj.get("reportingComponent") or "")


def match_fields(reqs: list[FieldRequirement], obj: JSON) -> bool:
    return all(r.matches(obj) for r in reqs)


def parse_selectors(
    label: str, field: str, resource: str
) -> tuple[list[Requirement], list[FieldRequirement]]:
    try:
        return parse_label_selector(label), parse_field_selector(field, resource)
    except ApiError:
        raise


def match_node_selector_term(term: JSON, labels: dict[str, str], node_name: str) -> bool:
    """One nodeSelectorTerm (matchExpressions AND matchFields)."""
    for expr in term.get("matchExpressions") or []:
        if not _node_expr(expr, labels):
            return False
    for expr in term.get("matchFields") or []:
        if expr.get("key") != "metadata.name" or not _node_expr(expr, {"metadata.name": node_name}):
            return False
    return bool(term.get("matchExpressions") or term.get("matchFields"))


def _node_expr(expr: JSON, labels: dict[str, str]) -> bool:
    key = expr.get("key", "")
    op = expr.get("operator", "")
    values = expr.get("values") or []
    present = key in labels
    value = labels.get(key, "")
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and values:
        try:
            left, right = int(value), int(values[0])
        except ValueError:
            return False
        return left > right if op == "Gt" else left < right
    return False
