"""PATCH bodies: JSON merge patch, strategic merge patch (lists merged by name), JSON patch, apply."""

from __future__ import annotations

from typing import Any

from ._util import JSON, deepcopy
from .errors import ApiError

MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "conditions": "type",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "tolerations": "key",
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return deepcopy(patch)
    result = deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(target: Any, patch: Any, key: str | None = None) -> Any:
    """Merge patch whose lists of named objects merge item by item (the common strategic behaviour)."""
    if isinstance(patch, list):
        merge_key = MERGE_KEYS.get(key or "")
        if merge_key and isinstance(target, list) and all(isinstance(p, dict) for p in patch):
            result = [deepcopy(t) for t in target]
            for item in patch:
                if item.get("$patch") == "delete":
                    result = [t for t in result if t.get(merge_key) != item.get(merge_key)]
                    continue
                for i, existing in enumerate(result):
                    if isinstance(existing, dict) and existing.get(merge_key) == item.get(merge_key):
                        result[i] = strategic_merge(existing, item)
                        break
                else:
                    result.append(deepcopy(item))
            return result
        return deepcopy(patch)
    if not isinstance(patch, dict):
        return deepcopy(patch)
    merged: dict[str, Any] = deepcopy(target) if isinstance(target, dict) else {}
    for k, value in patch.items():
        if k.startswith("$"):
            continue
        if value is None:
            merged.pop(k, None)
        else:
            merged[k] = strategic_merge(merged.get(k), value, k)
    return merged


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902: add, remove, replace, test, move, copy."""
    if not isinstance(ops, list):
        raise ApiError(
            400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    doc = deepcopy(target)
    for op in ops:
        kind = op.get("op")
        parts = _pointer(op.get("path", ""))
        if kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = deepcopy(_get(doc, source))
            if kind == "move":
                doc = _remove(doc, source)
            doc = _add(doc, parts, value)
        elif kind == "add":
            doc = _add(doc, parts, deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, parts)
        elif kind == "replace":
            _get(doc, parts)
            doc = _remove(doc, parts)
            doc = _add(doc, parts, deepcopy(op.get("value")))
        elif kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise ApiError(
                    422, "Invalid", "the server rejected our request due to an error in our request"
                )
        else:
            raise ApiError(422, "Invalid", f"Unexpected kind: {kind}")
    return doc


def _get(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for part in parts:
        if isinstance(cur, list):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError):
                raise ApiError(422, "Invalid", f"doc is missing path: /{'/'.join(parts)}") from None
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise ApiError(422, "Invalid", f"doc is missing path: /{'/'.join(parts)}")
    return cur


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _get(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            parent.insert(int(last), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise ApiError(422, "Invalid", f"doc is missing path: /{'/'.join(parts)}")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    parent = _get(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        parent.pop(int(last))
    elif isinstance(parent, dict) and last in parent:
        del parent[last]
    else:
        raise ApiError(422, "Invalid", f"doc is missing path: /{'/'.join(parts)}")
    return doc


def apply_patch(current: JSON | None, applied: JSON) -> JSON:
    """Server-side apply, simplified: the applied configuration is merged over the live object."""
    result: JSON = deepcopy(applied) if current is None else strategic_merge(current, applied)
    return result
