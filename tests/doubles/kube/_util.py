"""Small helpers shared by the Kubernetes double: time formats, ids, JSON, quantities."""

from __future__ import annotations

import calendar
import copy
import json
import random
import re
import time
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

JSON = dict[str, Any]
T = TypeVar("T")

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what apimachinery uses for generateName


def now_ns() -> int:
    """Wall clock in nanoseconds (what container log timestamps carry)."""
    return time.time_ns()


def rfc3339(ns: int | None = None) -> str:
    """metav1.Time: RFC 3339 with whole seconds, as every object timestamp is serialized."""
    secs = (now_ns() if ns is None else ns) // 1_000_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(secs))


def rfc3339_micro(ns: int | None = None) -> str:
    """metav1.MicroTime (events.k8s.io eventTime): six fractional digits."""
    ns = now_ns() if ns is None else ns
    secs, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rest // 1000:06d}Z"


def rfc3339_nano(ns: int) -> str:
    """Container log timestamps: always nine fractional digits (RFC3339Nano padded, like the kubelet)."""
    secs, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rest:09d}Z"


class TimeParseError(ValueError):
    """A time that Go's time.Parse(time.RFC3339, ...) would refuse; str() is Go's message."""


_LAYOUT = ["2006", "-", "01", "-", "02", "T", "15", ":", "04", ":", "05", "Z07:00"]
_ELEMENT_RE = {
    "2006": re.compile(r"\d{4}"),
    "01": re.compile(r"\d{2}"),
    "02": re.compile(r"\d{2}"),
    "15": re.compile(r"\d{2}"),
    "04": re.compile(r"\d{2}"),
    "05": re.compile(r"\d{2}(\.\d+)?"),
    "Z07:00": re.compile(r"Z|[+-]\d{2}:\d{2}"),
}


def parse_rfc3339(value: str) -> int:
    """Parse like Go's time.Parse(RFC3339): returns nanoseconds since the epoch, or TimeParseError.

    The error text copies Go's (`parsing time "x" as "2006-01-02T15:04:05Z07:00": cannot parse
    "x" as "2006"`) because the API server passes it through in a 400 Status.
    """
    layout = "2006-01-02T15:04:05Z07:00"
    rest = value
    parts: dict[str, str] = {}
    for element in _LAYOUT:
        pattern = _ELEMENT_RE.get(element)
        if pattern is None:
            if not rest.startswith(element):
                raise TimeParseError(
                    f'parsing time "{value}" as "{layout}": cannot parse "{rest}" as "{element}"'
                )
            rest = rest[len(element) :]
            continue
        match = pattern.match(rest)
        if match is None:
            raise TimeParseError(
                f'parsing time "{value}" as "{layout}": cannot parse "{rest}" as "{element}"'
            )
        parts[element] = match.group(0)
        rest = rest[match.end() :]
    if rest:
        raise TimeParseError(f'parsing time "{value}": extra text: "{rest}"')
    secs_part = parts["05"]
    whole, _, frac = secs_part.partition(".")
    tm = (
        int(parts["2006"]),
        int(parts["01"]),
        int(parts["02"]),
        int(parts["15"]),
        int(parts["04"]),
        int(whole),
    )
    epoch = calendar.timegm((*tm, 0, 0, 0))
    zone = parts["Z07:00"]
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        epoch -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    nanos = int((frac + "000000000")[:9]) if frac else 0
    return epoch * 1_000_000_000 + nanos


def new_uid() -> str:
    return str(uuid.uuid4())


def random_suffix(length: int = 5) -> str:
    return "".join(random.choice(_NAME_ALPHABET) for _ in range(length))


def dumps(obj: Any) -> bytes:
    """Compact JSON like the API server sends to non-curl clients."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def deepcopy(obj: T) -> T:
    return copy.deepcopy(obj)


def go_quote(value: str) -> str:
    """strconv.Quote-ish: how Go prints a string inside an error message."""
    return json.dumps(value, ensure_ascii=False)


def go_list(items: list[str]) -> str:
    """fmt.Sprintf("%v", []string{...}): `[a b c]`."""
    return "[" + " ".join(items) + "]"


def go_char(ch: str) -> str:
    """How encoding/json quotes an offending character: '\\u0081' for non-printables."""
    if ch.isprintable() and ord(ch) < 0x7F:
        return "'" + ch + "'"
    return "'\\u" + f"{ord(ch):04x}" + "'"


_SUFFIXES = {
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
    "Gi": Decimal(1024**3),
    "Ti": Decimal(1024**4),
    "Pi": Decimal(1024**5),
    "Ei": Decimal(1024**6),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(1000),
    "M": Decimal(1000**2),
    "G": Decimal(1000**3),
    "T": Decimal(1000**4),
    "P": Decimal(1000**5),
    "E": Decimal(1000**6),
}
_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$")


def parse_quantity(value: Any) -> Decimal:
    """resource.Quantity to a number; ValueError for what the API server calls an invalid quantity."""
    if isinstance(value, bool):
        raise ValueError(f"quantities must match the regular expression: {value!r}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY_RE.match(str(value))
    if match is None:
        raise ValueError(str(value))
    number, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation as exc:
        raise ValueError(str(value)) from exc
    if suffix[:1] in ("e", "E"):
        return base * (Decimal(10) ** int(suffix[1:]))
    return base * _SUFFIXES[suffix]


def json_path_get(obj: Any, path: list[str | int]) -> Any:
    cur = obj
    for part in path:
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                return None
            cur = cur[part]
        else:
            if not isinstance(cur, dict):
                return None
            cur = cur.get(part)
    return cur
