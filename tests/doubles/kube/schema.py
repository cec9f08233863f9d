"""Decoding request bodies like the API server: Go-worded JSON errors, unknown/duplicate fields, types.

The field schema comes from kubernetes_asyncio's generated models (`openapi_types`/`attribute_map`),
so every field the client library knows is known here too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import models as k8s_models

from ._util import go_char


class JsonSyntaxError(ValueError):
    """Body is not JSON; str() is encoding/json's wording."""


class _Obj(dict[str, Any]):
    """A decoded JSON object that remembers keys it saw twice."""

    dups: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Obj:
    obj = _Obj()
    obj.dups = []
    for key, value in pairs:
        if key in obj:
            obj.dups.append(key)
        obj[key] = value
    return obj


def decode(raw: bytes) -> Any:
    """Parse JSON keeping duplicate-key information; JsonSyntaxError with Go's message otherwise."""
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text, object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(_go_message(exc, text)) from None


def _go_message(exc: json.JSONDecodeError, text: str) -> str:
    pos = exc.pos
    if pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated"):
        return "unexpected end of JSON input"
    char = go_char(text[pos])
    msg = exc.msg
    if msg.startswith("Expecting property name"):
        return f"invalid character {char} looking for beginning of object key string"
    if msg.startswith("Expecting ':'"):
        return f"invalid character {char} after object key"
    if msg.startswith("Expecting ','"):
        return f"invalid character {char} after object key:value pair"
    if msg.startswith("Extra data"):
        return f"invalid character {char} after top-level value"
    if msg.startswith("Invalid control character"):
        return f"invalid character {char} in string literal"
    return f"invalid character {char} looking for beginning of value"


def to_plain(obj: Any) -> Any:
    """Drop the decoding helper types (so objects can be stored and deep-copied cheaply)."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    return obj


@dataclass
class FieldReport:
    """What strict decoding found, in document order."""

    problems: list[str] = field(default_factory=list)  # `unknown field "x"` / `duplicate field "x"`
    unknown: list[str] = field(default_factory=list)
    type_error: str | None = None


_LIST_RE = re.compile(r"^list\[(.+)\]$")
_DICT_RE = re.compile(r"^dict\(str, (.+)\)$")


def _model(name: str) -> Any:
    return getattr(k8s_models, name, None)


def _go_type(type_name: str) -> str:
    if type_name == "str":
        return "string"
    if type_name == "int":
        return "int64"
    if type_name in ("bool", "float"):
        return "bool" if type_name == "bool" else "float64"
    match = _LIST_RE.match(type_name)
    if match:
        return "[]" + _go_type(match.group(1))
    match = _DICT_RE.match(type_name)
    if match:
        return "map[string]" + _go_type(match.group(1))
    return "v1." + re.sub(r"^V\d+(beta\d+|alpha\d+)?|^CoreV1", "", type_name)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def check_fields(obj: Any, model_name: str) -> FieldReport:
    """Walk `obj` against the model: unknown/duplicate fields (document order), the first type error."""
    report = FieldReport()
    _walk(obj, model_name, "", [], report, _struct_name(model_name))
    return report


def _struct_name(model_name: str) -> str:
    return re.sub(r"^V\d+(beta\d+|alpha\d+)?|^CoreV1|^AuthenticationV1", "", model_name)


def _walk(
    value: Any, type_name: str, path: str, go_path: list[str], report: FieldReport, struct: str
) -> None:
    if value is None or type_name in ("object", "datetime"):
        return
    list_match = _LIST_RE.match(type_name)
    dict_match = _DICT_RE.match(type_name)
    primitive = type_name in ("str", "int", "bool", "float")
    ok = True
    if list_match:
        ok = isinstance(value, list)
    elif dict_match or not primitive:
        ok = isinstance(value, dict)
    elif type_name == "str":
        ok = isinstance(value, str)
    elif type_name == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif type_name == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif type_name == "bool":
        ok = isinstance(value, bool)
    if not ok:
        if report.type_error is None:
            where = ".".join(go_path)
            report.type_error = (
                f"json: cannot unmarshal {_json_kind(value)} into Go struct field {struct}.{where} "
                f"of type {_go_type(type_name)}"
            )
        return
    if list_match:
        for index, item in enumerate(value):
            _walk(item, list_match.group(1), f"{path}[{index}]", go_path, report, struct)
        return
    if dict_match:
        inner = dict_match.group(1)
        for key, item in value.items():
            if inner == "str" and isinstance(item, int | float) and not isinstance(item, bool):
                continue  # resource.Quantity and friends accept numbers
            _walk(item, inner, f"{path}[{key}]", go_path, report, struct)
        return
    if primitive:
        return
    model = _model(type_name)
    if model is None:
        return
    by_json = {json_name: model.openapi_types[attr] for attr, json_name in model.attribute_map.items()}
    for dup in getattr(value, "dups", []):
        report.problems.append(f'duplicate field "{_join(path, dup)}"')
    for key, item in value.items():
        child = _join(path, key)
        if key not in by_json:
            report.problems.append(f'unknown field "{child}"')
            report.unknown.append(child)
            continue
        _walk(item, by_json[key], child, [*go_path, key], report, _struct_name(type_name))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def drop_unknown(obj: Any, unknown: list[str]) -> None:
    """Remove the unknown fields (what Warn/Ignore modes do before storing)."""
    for dotted in unknown:
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", dotted)
        cur: Any = obj
        for part in parts[:-1]:
            cur = cur[int(part[1:-1])] if part.startswith("[") else cur[part]
        last = parts[-1]
        if isinstance(cur, dict):
            cur.pop(last, None)


def warning_header(text: str) -> str:
    """`299 - "unknown field \\"spec.x\\""`: the Warning header the server sends per problem."""
    return "299 - " + json.dumps(text)
