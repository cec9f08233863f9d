"""Loading config.toml: parse, validate against the schema, remember where every key is.

Every problem found is kept as a :class:`Problem` naming the file, the line,
the key and the fix, so that ``kuberunner config check`` can list them all at
once and the other commands can refuse a broken file with the same words.
Values of secret keys never reach a message.
"""

from __future__ import annotations

import bisect
import copy
import datetime
import difflib
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from kuberunner.config.schema import Config, RunnerConfig, field_flags, parse_duration

__all__ = [
    "NOT_SUPPORTED_YET",
    "REDACTED",
    "SEVERITIES",
    "ConfigError",
    "KeyPath",
    "LoadedConfig",
    "Problem",
    "Severity",
    "display_key",
    "fields_by_key",
    "iter_fields",
    "known_keys",
    "load_config",
    "locate_keys",
    "looks_secret",
    "read_config",
    "resolve",
    "runner_at",
    "scrub",
    "secret_values",
    "sort_problems",
    "table_display",
    "unwrap_annotation",
]

Severity = Literal["error", "warning", "unsupported"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "unsupported")
KeyPath = tuple[str | int, ...]

REDACTED = "[REDACTED]"
NOT_SUPPORTED_YET = "not supported yet: kuberunner loads this key but ignores it"


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth knowing) about a config file, with its fix."""

    path: Path
    line: int | None
    key: str
    severity: Severity
    message: str
    fix: str
    runner: str | None = None

    @property
    def label(self) -> str:
        """The key as shown to the user: ``runners.kubernetes.namespace (runner "ci")``."""
        if self.runner:
            return f"{self.key} ({self.runner})" if self.key else f"({self.runner})"
        return self.key

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else str(self.path)

    def render(self) -> str:
        """``FILE:LINE: key: message`` and an indented ``fix:`` line."""
        head = (
            f"{self.location}: {self.label}: {self.message}"
            if self.label
            else (f"{self.location}: {self.message}")
        )
        return f"{head}\n  fix: {self.fix}" if self.fix else head

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "line": self.line,
            "key": self.key,
            "runner": self.runner,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
        }


class ConfigError(Exception):
    """config.toml cannot be used; ``problems`` says where and how to fix it."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        self.problems = list(problems)
        details = "\n".join(p.render() for p in self.problems if p.severity == "error")
        super().__init__(f"{message}\n{details}" if details else message)


@dataclass
class LoadedConfig:
    """A parsed config.toml: the validated config, every problem, and key lines."""

    path: Path
    config: Config = field(repr=False)
    problems: list[Problem] = field(default_factory=list)
    lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    readable: bool = True

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return self.readable and not self.errors

    def line_for(self, loc: KeyPath) -> int | None:
        """The line of ``loc``, or of the nearest enclosing table that is in the file."""
        for end in range(len(loc), 0, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None

    def runner_label(self, loc: KeyPath) -> str | None:
        """``runner "name"`` for a key inside a ``[[runners]]`` entry."""
        if len(loc) < 2 or loc[0] != "runners" or not isinstance(loc[1], int):
            return None
        runners = self.raw.get("runners")
        if not isinstance(runners, list) or not 0 <= loc[1] < len(runners):
            return None
        entry = runners[loc[1]]
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name:
            return f'runner "{name}"'
        return f"runner #{loc[1] + 1}" if len(runners) > 1 else None

    def problem(self, loc: KeyPath, severity: Severity, message: str, fix: str) -> Problem:
        """A problem about the key at ``loc``, placed on its line."""
        return Problem(
            path=self.path,
            line=self.line_for(loc),
            key=display_key(loc),
            severity=severity,
            message=message,
            fix=fix,
            runner=self.runner_label(loc),
        )


# ----------------------------------------------------------------------------- keys

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|KEY|CREDENTIAL|PRIVATE|AUTH", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    """True for a variable or key name that probably holds a credential."""
    return bool(_SECRET_NAME.search(name))


def display_key(loc: KeyPath) -> str:
    """``("runners", 0, "kubernetes", "namespace")`` -> ``runners.kubernetes.namespace``."""
    parts = []
    for part in loc:
        if isinstance(part, int):
            continue
        parts.append(part if _BARE_KEY.match(part) else '"' + part.replace('"', '\\"') + '"')
    return ".".join(parts)


def table_display(loc: KeyPath) -> str:
    """How a table is written in the file: ``[runners.kubernetes]``, ``[[runners]]``."""
    if not loc:
        return "the top level"
    name = display_key(loc)
    return f"[[{name}]]" if isinstance(loc[-1], int) else f"[{name}]"


# ------------------------------------------------------------------------ locator


class _Locator:
    """Maps every key path in a TOML text to the line where it is written.

    The text must already be valid TOML (tomllib accepted it); the locator
    follows table headers, arrays of tables (counting their entries), dotted
    keys, inline tables, arrays and multi-line strings. The first line where a
    path appears wins, so an implicitly created table gets the line of its
    first key.
    """

    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.lines: dict[KeyPath, int] = {}
        self.aot_len: dict[KeyPath, int] = {}

    def line_at(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos)

    def mark(self, path: KeyPath, pos: int) -> None:
        line = self.line_at(pos)
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], line)

    def run(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.i >= self.n:
                break
            if self.s[self.i] == "[":
                table = self.header()
            else:
                self.key_value(table)
            self.skip_blank(newlines=False)
            self.skip_line()
        return self.lines

    # -- low level
    def skip_blank(self, *, newlines: bool) -> None:
        while self.i < self.n:
            c = self.s[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "#":
                self.skip_line_content()
            else:
                break

    def skip_line_content(self) -> None:
        end = self.s.find("\n", self.i)
        self.i = self.n if end < 0 else end

    def skip_line(self) -> None:
        end = self.s.find("\n", self.i)
        self.i = self.n if end < 0 else end + 1

    def key(self) -> list[str]:
        parts: list[str] = []
        while self.i < self.n:
            self.skip_blank(newlines=False)
            c = self.s[self.i] if self.i < self.n else ""
            if c == '"':
                start = self.i
                self.basic_string()
                parts.append(_decode_basic(self.s[start : self.i]))
            elif c == "'":
                end = self.s.find("'", self.i + 1)
                end = self.n if end < 0 else end
                parts.append(self.s[self.i + 1 : end])
                self.i = end + 1
            else:
                start = self.i
                while self.i < self.n and (self.s[self.i].isalnum() or self.s[self.i] in "_-"):
                    self.i += 1
                parts.append(self.s[start : self.i])
                if self.i == start:  # not a key at all: give up on this line
                    break
            self.skip_blank(newlines=False)
            if self.i < self.n and self.s[self.i] == ".":
                self.i += 1
                continue
            break
        return parts

    # -- statements
    def header(self) -> KeyPath:
        pos = self.i
        aot = self.s.startswith("[[", self.i)
        self.i += 2 if aot else 1
        names = self.key()
        self.i += 2 if aot else 1
        resolved: list[str | int] = []
        for k, name in enumerate(names):
            resolved.append(name)
            last = k == len(names) - 1
            here = tuple(resolved)
            if aot and last:
                index = self.aot_len.get(here, 0)
                self.aot_len[here] = index + 1
                resolved.append(index)
            elif here in self.aot_len:
                resolved.append(self.aot_len[here] - 1)
        path = tuple(resolved)
        self.mark(path, pos)
        return path

    def key_value(self, table: KeyPath) -> None:
        pos = self.i
        names = self.key()
        if not names or self.i >= self.n or self.s[self.i] != "=":
            self.skip_line_content()
            return
        self.i += 1
        path = table + tuple(names)
        self.mark(path, pos)
        self.skip_blank(newlines=False)
        self.value(path)

    def value(self, path: KeyPath) -> None:
        s, i = self.s, self.i
        if s.startswith('"""', i):
            self.multiline('"""')
        elif s.startswith("'''", i):
            self.multiline("'''")
        elif i < self.n and s[i] == '"':
            self.basic_string()
        elif i < self.n and s[i] == "'":
            end = s.find("'", i + 1)
            self.i = self.n if end < 0 else end + 1
        elif i < self.n and s[i] == "[":
            self.array(path)
        elif i < self.n and s[i] == "{":
            self.inline_table(path)
        else:
            while self.i < self.n and s[self.i] not in ",]}#\r\n":
                self.i += 1

    def basic_string(self) -> None:
        self.i += 1
        while self.i < self.n:
            c = self.s[self.i]
            if c == "\\":
                self.i += 2
            elif c == '"':
                self.i += 1
                return
            elif c == "\n":
                return
            else:
                self.i += 1

    def multiline(self, quote: str) -> None:
        self.i += 3
        while self.i < self.n:
            if quote == '"""' and self.s[self.i] == "\\":
                self.i += 2
            elif self.s.startswith(quote, self.i):
                self.i += 3
                extra = 0
                while extra < 2 and self.i < self.n and self.s[self.i] == quote[0]:
                    self.i += 1
                    extra += 1
                return
            else:
                self.i += 1

    def array(self, path: KeyPath) -> None:
        self.i += 1
        index = 0
        while self.i < self.n:
            self.skip_blank(newlines=True)
            if self.i >= self.n or self.s[self.i] == "]":
                self.i += 1
                return
            before = self.i
            self.mark((*path, index), self.i)
            self.value((*path, index))
            index += 1
            self.skip_blank(newlines=True)
            # a comma, or no progress at all (not valid TOML after all): step over it
            if (self.i < self.n and self.s[self.i] == ",") or self.i == before:
                self.i += 1

    def inline_table(self, path: KeyPath) -> None:
        self.i += 1
        while self.i < self.n:
            self.skip_blank(newlines=True)
            if self.i >= self.n or self.s[self.i] == "}":
                self.i += 1
                return
            pos = self.i
            names = self.key()
            if self.i < self.n and self.s[self.i] == "=":
                self.i += 1
                inner = path + tuple(names)
                self.mark(inner, pos)
                self.skip_blank(newlines=False)
                self.value(inner)
            self.skip_blank(newlines=True)
            if (self.i < self.n and self.s[self.i] == ",") or self.i == pos:
                self.i += 1


def _decode_basic(literal: str) -> str:
    """The value of a quoted basic-string key, escapes included."""
    try:
        value = tomllib.loads(f"k = {literal}")["k"]
    except tomllib.TOMLDecodeError:
        return literal.strip('"')
    return value if isinstance(value, str) else literal.strip('"')


def locate_keys(text: str) -> dict[KeyPath, int]:
    """Line number (1-based) of every key path in a valid TOML text.

    Array-of-tables entries are numbered as in the parsed data, so
    ``("runners", 1, "kubernetes", "namespace")`` is the namespace of the
    second ``[[runners]]``. Elements of arrays get their own line too.
    """
    return _Locator(text).run()


# ----------------------------------------------------------------- schema helpers

_MODEL_KIND = Literal["model", "list", "dict", "free", "other"]


def unwrap_annotation(annotation: Any) -> tuple[_MODEL_KIND, type[BaseModel] | None]:
    """What a field holds: a table, an array of tables, a typed table (``dict[str, str]``),
    a free-form table (``dict[str, Any]``: an executor kuberunner does not model), or a value."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return unwrap_annotation(args[0])
        return "other", None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        kind, model = unwrap_annotation(item)
        return ("list", model) if kind == "model" else ("other", None)
    if origin is dict:
        value_type = typing.get_args(annotation)[1:]
        return ("free" if value_type == (Any,) else "dict"), None
    return "other", None


def toml_name(name: str, info: FieldInfo) -> str:
    return info.alias or name


def fields_by_key(model: type[BaseModel]) -> dict[str, tuple[str, FieldInfo]]:
    """TOML key (alias, and the Python name, both accepted) -> (field name, info)."""
    out: dict[str, tuple[str, FieldInfo]] = {}
    for name, info in model.model_fields.items():
        out[name] = (name, info)
        out[toml_name(name, info)] = (name, info)
    return out


def known_keys(model: type[BaseModel]) -> list[str]:
    """The keys a table accepts, spelled as in gitlab-runner's documentation."""
    return [toml_name(name, info) for name, info in model.model_fields.items()]


@dataclass(frozen=True)
class _Resolved:
    """Where a key path lands in the schema."""

    model: type[BaseModel]  # the table holding the key
    name: str | None  # the field name, if the key is a known field
    secret: bool
    later: bool
    free_form: bool  # inside a dict[...] value: no schema below
    untyped: bool = False  # inside a dict[str, Any]: names are all we know about secrets


def resolve(loc: KeyPath) -> _Resolved:
    """Walk the schema along ``loc`` (aliases or names, list indices skipped)."""
    model: type[BaseModel] = Config
    secret = later = False
    for k, part in enumerate(loc):
        if isinstance(part, int):
            continue
        entry = fields_by_key(model).get(part)
        if entry is None:
            return _Resolved(model, None, secret, later, False)
        name, info = entry
        is_later, is_secret = field_flags(model, name)
        secret = secret or is_secret or name == "environment"
        later = later or is_later
        if k == len(loc) - 1:
            return _Resolved(model, name, secret, later, False)
        kind, inner = unwrap_annotation(info.annotation)
        if kind in ("model", "list") and inner is not None:
            model = inner
            continue
        # no schema below this field; inside an untyped table a key is secret if its name says so
        untyped = kind == "free"
        rest = [p for p in loc[k + 1 :] if isinstance(p, str)]
        secret = secret or (untyped and any(looks_secret(p) for p in rest))
        return _Resolved(model, name, secret, later, True, untyped)
    return _Resolved(model, None, secret, later, False)


@dataclass(frozen=True)
class _TableInfo:
    path: tuple[str, ...]  # keys without indices
    aot: bool
    model: type[BaseModel]


def _schema_tables() -> list[_TableInfo]:
    """Every table of the schema, for "this key belongs in [...]" hints."""
    out: list[_TableInfo] = []

    def walk(model: type[BaseModel], path: tuple[str, ...], aot: bool, depth: int) -> None:
        out.append(_TableInfo(path, aot, model))
        if depth > 12:
            return
        for name, info in model.model_fields.items():
            kind, inner = unwrap_annotation(info.annotation)
            if inner is not None and kind in ("model", "list"):
                walk(inner, (*path, toml_name(name, info)), kind == "list", depth + 1)

    walk(Config, (), False, 0)
    return out


_TABLES = _schema_tables()


def _show_table(info: _TableInfo) -> str:
    if not info.path:
        return "the top level"
    name = ".".join(info.path)
    return f"[[{name}]]" if info.aot else f"[{name}]"


def _unknown_key(loaded: LoadedConfig, loc: KeyPath, value: Any) -> Problem:
    """An unknown key: the closest known key here, or the table where it belongs."""
    key = loc[-1]
    assert isinstance(key, str)
    table_loc = loc[:-1]
    res = resolve((*table_loc, "_"))
    model = res.model
    here = tuple(p for p in table_loc if isinstance(p, str))
    what = "table" if isinstance(value, dict) else "key"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        what = "array of tables"
    where = table_display(table_loc)

    candidates = known_keys(model)
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.75)
    if close and lowered[close[0]] != key:
        better = lowered[close[0]]
        return loaded.problem(
            loc, "error", f'unknown {what}; did you mean "{better}"?', f'rename "{key}" to "{better}"'
        )

    elsewhere = [t for t in _TABLES if t.path != here and key in known_keys(t.model)]
    if elsewhere:

        def distance(t: _TableInfo) -> int:
            common = 0
            for a, b in zip(t.path, here, strict=False):
                if a != b:
                    break
                common += 1
            return len(t.path) + len(here) - 2 * common

        best = min(distance(t) for t in elsewhere)
        nearest = [t for t in elsewhere if distance(t) == best][:3]
        listed = " or ".join(_show_table(t) for t in nearest)
        header = ".".join((*nearest[0].path, key))
        if isinstance(value, dict):
            fix = f"write its header as [{header}]"
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            fix = f"write its headers as [[{header}]]"
        else:
            fix = f"move {key} = ... under {_show_table(nearest[0])}"
        return loaded.problem(loc, "error", f'unknown {what} in {where}; "{key}" belongs in {listed}', fix)

    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    hint = f'; did you mean "{lowered[close[0]]}"?' if close else ""
    return loaded.problem(
        loc,
        "error",
        f"unknown {what} in {where}{hint}",
        f'rename it to "{lowered[close[0]]}"'
        if close
        else "remove it, or check its spelling "
        "(`kuberunner config show` prints every key kuberunner knows, with its default)",
    )


# --------------------------------------------------------------- validation errors


def _describe(value: Any, secret: bool) -> str:
    """Plain words for a value; a secret's value is never shown."""
    if isinstance(value, bool):
        return "a boolean" if secret else f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return "an integer" if secret else f"the integer {value}"
    if isinstance(value, float):
        return "a number" if secret else f"the number {value}"
    if isinstance(value, str):
        if secret:
            return "a string"
        shown = value if len(value) <= 60 else value[:57] + "..."
        return 'a string "' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return "a date/time"
    return "a value"


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "float_type": "a number",
    "float_parsing": "a number",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def _type_fix(loc: KeyPath, expected: str, value: Any) -> str:
    key = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if expected == "an integer" or expected == "a number":
        if isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ValueError:
                return f"write a number without quotes, e.g. {key} = 10"
            number = int(seconds) if seconds == int(seconds) else seconds
            return f"write the number without quotes: {key} = {number}"
        return f"write a whole number, e.g. {key} = 10"
    if expected == "true or false":
        return f"write true or false without quotes, e.g. {key} = true"
    if expected == "a string":
        return f'put the value in double quotes, e.g. {key} = "..."'
    if expected == "an array":
        if isinstance(value, dict):
            return f"write the header with double brackets, [[{display_key(loc)}]], one per entry"
        return f'write an array, e.g. {key} = ["..."]'
    return f"write a table: a [{key}] header followed by key = value lines"


def _is_env_pair(item: Any) -> bool:
    return isinstance(item, str) and "=" in item and not item.startswith("=")


def _schema_problems(loaded: LoadedConfig, err: Mapping[str, Any]) -> list[Problem]:
    """Plain-words problems for one pydantic error."""
    return _environment_problems(loaded, err) or [_schema_problem(loaded, err)]


def _environment_problems(loaded: LoadedConfig, err: Mapping[str, Any]) -> list[Problem]:
    loc: KeyPath = tuple(err["loc"])
    value = err.get("input")
    if err["type"] != "value_error" or resolve(loc).name != "environment" or not isinstance(value, list):
        return []
    # one problem per bad entry, on its own line; an entry may hold a secret: never shown
    return [
        loaded.problem(
            (*loc, i),
            "error",
            f'entry {i + 1} of environment is not "KEY=value"',
            'write each variable as "NAME=value", e.g. environment = ["GIT_DEPTH=10"]',
        )
        for i, item in enumerate(value)
        if not _is_env_pair(item)
    ]


def _schema_problem(loaded: LoadedConfig, err: Mapping[str, Any]) -> Problem:
    loc: KeyPath = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    res = resolve(loc)
    key = next((p for p in reversed(loc) if isinstance(p, str)), "")

    if kind == "extra_forbidden":
        return _unknown_key(loaded, loc, value)
    if kind == "missing":
        table_loc = loc[:-1]
        return loaded.problem(
            loc,
            "error",
            f'missing required key "{key}" in {table_display(table_loc)}',
            f"add {key} = ... to this {table_display(table_loc)} entry",
        )
    if kind in _EXPECTED:
        expected = _EXPECTED[kind]
        return loaded.problem(
            loc,
            "error",
            f"expected {expected}, got {_describe(value, res.secret)}",
            _type_fix(loc, expected, value),
        )
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        shown = ", ".join(f'"{o}"' for o in options if o)
        if "" in options:
            shown += " (or empty)"
        return loaded.problem(
            loc,
            "error",
            f"expected one of {shown}; got {_describe(value, res.secret)}",
            f"use one of: {shown}",
        )
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, name = bounds[kind]
        limit = ctx.get(name)
        return loaded.problem(
            loc,
            "error",
            f"must be {words} {limit}, got {_describe(value, res.secret)}",
            f"set {key} to a value {words} {limit}",
        )
    if kind == "value_error":
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        return loaded.problem(loc, "error", message, f"correct {key} as described")
    message = str(err.get("msg", "invalid value"))
    return loaded.problem(loc, "error", f"invalid value: {message}", f"correct {key}")


def _prune(data: dict[str, Any], paths: list[KeyPath]) -> bool:
    """Remove the offending values so the rest of the file can still be checked."""
    removed = False
    for loc in sorted(set(paths), reverse=True):
        parent: Any = data
        for part in loc[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        last = loc[-1] if loc else None
        if loc[:1] == ("runners",) and len(loc) == 2 and isinstance(parent, list):
            # keep runner positions stable: lines and names are looked up by index
            if isinstance(last, int) and 0 <= last < len(parent):
                parent[last] = {}
                removed = True
            continue
        in_dict = isinstance(parent, dict) and last in parent
        in_list = isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent)
        if in_dict or in_list:
            del parent[last]
            removed = True
    return removed


def _prune_path(err: Mapping[str, Any]) -> KeyPath:
    loc: KeyPath = tuple(err["loc"])
    if err["type"] == "missing":
        return loc[:-1]
    res = resolve(loc)
    if res.name is not None and not res.free_form and res.model.model_fields[res.name].is_required():
        # without a valid value for a required key, the whole entry goes
        return loc[:-1]
    return loc


def _validate(loaded: LoadedConfig) -> tuple[Config, list[Problem]]:
    """Validate strictly (TOML has types); report every error, keep the valid rest."""
    data = copy.deepcopy(loaded.raw)
    problems: list[Problem] = []
    for attempt in range(10):
        try:
            return Config.model_validate(data, strict=True), problems
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if attempt == 0:
                problems = [p for e in errors for p in _schema_problems(loaded, e)]
            if not _prune(data, [_prune_path(e) for e in errors]):
                break
    return _empty_config(), problems


# ------------------------------------------------------------------------- secrets


def secret_values(raw: Mapping[str, Any]) -> set[str]:
    """Every credential written in the file: secret keys, secret-looking variables,
    passwords inside URLs. Used to scrub any text shown to the user."""
    found: set[str] = set()

    def add(value: Any) -> None:
        if isinstance(value, str) and len(value) >= 4:
            found.add(value)

    def walk(value: Any, loc: KeyPath) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*loc, k))
            return
        if isinstance(value, list):
            for index, v in enumerate(value):
                walk(v, (*loc, index))
            return
        if not isinstance(value, str):
            return
        res = resolve(loc)
        name = next((p for p in reversed(loc) if isinstance(p, str)), "")
        if res.name == "environment" or (res.untyped and "=" in value):
            var, sep, rest = value.partition("=")
            if sep and looks_secret(var):
                add(rest)
        if (res.secret and res.name != "environment") or (res.untyped and looks_secret(name)):
            add(value)
        match = re.match(r"^[a-z][a-z0-9+.-]*://[^/@:]*:([^/@]+)@", value, re.IGNORECASE)
        if match:
            add(match.group(1))

    walk(dict(raw), ())
    return found


def scrub(text: str, secrets: set[str]) -> str:
    """Replace every known secret value in ``text`` (longest first)."""
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def _scrubbed(problem: Problem, secrets: set[str]) -> Problem:
    return replace(problem, message=scrub(problem.message, secrets), fix=scrub(problem.fix, secrets))


# ------------------------------------------------------------------------- loading


def _empty_config() -> Config:
    """The configuration of an unreadable file: all defaults, no runners."""
    return Config.model_validate({})


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def _syntax_problem(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> Problem:
    message = str(exc)
    line: int | None = None
    column: int | None = None
    match = _TOML_POSITION.search(message)
    if match:
        line, column = int(match.group(1)), int(match.group(2))
        message = message[: match.start()]
    elif _TOML_END.search(message):
        message = _TOML_END.sub("", message)
        line = text.count("\n") + (0 if text.endswith("\n") else 1)
    where = f" (column {column})" if column is not None else ""
    return Problem(
        path=path,
        line=line,
        key="",
        severity="error",
        message=f"TOML syntax error: {message[:1].lower()}{message[1:]}{where}",
        fix=_syntax_fix(message),
    )


_SYNTAX_FIXES = (
    (
        ("overwrite a value", "twice"),
        "this key or table is already set above: keep only one of them "
        "(a list of tables is written [[name]] for each entry)",
    ),
    (("Expected '=' after a key",), "write key = value, with strings in double quotes"),
    (
        ("Illegal character", "Unterminated string"),
        'close the string with its quote on the same line (text over several lines goes between """ and """)',
    ),
    (
        ("Expected ']' at the end of a table", "Expected ']]'"),
        "close the header: [name] for a table, [[name]] for an entry of a list of tables",
    ),
    (("Unclosed array",), "close the array with ] and separate its items with commas"),
    (("Unclosed inline table",), "close the inline table with } on the same line"),
    (("Expected newline or end of document",), "put each key = value on its own line"),
    (
        ("Invalid value", "Invalid date"),
        'write the value in TOML: "text" in double quotes, numbers, '
        'true/false, ["arrays"] or { inline = "tables" }',
    ),
)


def _syntax_fix(message: str) -> str:
    for needles, fix in _SYNTAX_FIXES:
        if any(n in message for n in needles):
            return fix
    return (
        "correct the TOML syntax at this position: strings need double quotes, tables are "
        "written [name], lists of tables [[name]], one key = value per line"
    )


def _missing_problem(path: Path) -> Problem:
    return Problem(
        path=path,
        line=None,
        key="",
        severity="error",
        message="config file not found",
        fix="create it with `kuberunner register --url URL --token TOKEN`, or point to your "
        "gitlab-runner file with --config PATH (or CONFIG_FILE=PATH)",
    )


def read_config(path: Path) -> LoadedConfig:
    """Parse and validate ``path``, collecting every problem instead of raising.

    Only the file and its schema are checked here; :func:`load_config` adds
    the checks of settings that contradict each other.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return LoadedConfig(path, _empty_config(), [_missing_problem(path)], readable=False)
    except IsADirectoryError:
        problem = Problem(
            path,
            None,
            "",
            "error",
            "is a directory, not a config file",
            "pass the path of config.toml itself, e.g. --config /etc/gitlab-runner/config.toml",
        )
        return LoadedConfig(path, _empty_config(), [problem], readable=False)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        problem = Problem(
            path,
            None,
            "",
            "error",
            f"cannot read the file: {reason.lower()}",
            "run kuberunner as a user that can read it (gitlab-runner's files are "
            "usually owned by root with mode 0600), or fix the file's permissions",
        )
        return LoadedConfig(path, _empty_config(), [problem], readable=False)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problem = Problem(
            path,
            line,
            "",
            "error",
            "the file is not valid UTF-8 text",
            "save config.toml as UTF-8 (TOML files must be UTF-8)",
        )
        return LoadedConfig(path, _empty_config(), [problem], readable=False)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return LoadedConfig(path, _empty_config(), [_syntax_problem(path, text, exc)], readable=False)
    loaded = LoadedConfig(path, _empty_config(), [], lines=locate_keys(text), raw=raw)
    config, problems = _validate(loaded)
    loaded.config = config
    secrets = secret_values(raw)
    loaded.problems = [_scrubbed(p, secrets) for p in problems]
    return loaded


def load_config(path: Path, *, strict: bool = True) -> LoadedConfig:
    """Load ``path`` with every check ``kuberunner config check`` makes.

    With ``strict`` (what commands that run jobs want) any error-severity
    problem raises :class:`ConfigError` listing them all with their fixes;
    warnings and "not supported yet" entries stay in ``problems``.
    """
    # check.py builds on this module; imported here to keep the dependency one-way at import time
    from kuberunner.config.check import semantic_problems

    loaded = read_config(path)
    if loaded.readable:
        secrets = secret_values(loaded.raw)
        # a key with a schema error was dropped; do not report it a second time as missing
        seen = {(p.line, p.key, p.runner) for p in loaded.problems}
        extra = [
            _scrubbed(p, secrets) for p in semantic_problems(loaded) if (p.line, p.key, p.runner) not in seen
        ]
        loaded.problems = sort_problems(loaded.problems + extra)
    if strict and not loaded.ok:
        count = len(loaded.errors)
        noun = "problem" if count == 1 else "problems"
        raise ConfigError(
            f"{path}: {count} {noun} must be fixed before kuberunner can use this file", loaded.problems
        )
    return loaded


_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


def sort_problems(problems: Sequence[Problem]) -> list[Problem]:
    """Errors first, then warnings, then "not supported yet"; by file and line inside each."""
    return sorted(
        problems,
        key=lambda p: (str(p.path), _ORDER[p.severity], p.line if p.line is not None else 0, p.key),
    )


def iter_fields(raw: Mapping[str, Any]) -> Iterator[tuple[KeyPath, type[BaseModel], str, Any]]:
    """(loc, table model, field name, value) for every known key written in the file.

    Does not descend into free-form values or into keys marked "not supported
    yet" (one report per unsupported table is enough).
    """

    def walk(
        value: Mapping[str, Any], model: type[BaseModel], loc: KeyPath
    ) -> Iterator[tuple[KeyPath, type[BaseModel], str, Any]]:
        keys = fields_by_key(model)
        for key, item in value.items():
            entry = keys.get(key)
            if entry is None:
                continue
            name, info = entry
            here = (*loc, key)
            yield here, model, name, item
            if field_flags(model, name)[0]:
                continue
            kind, inner = unwrap_annotation(info.annotation)
            if inner is None:
                continue
            if kind == "model" and isinstance(item, dict):
                yield from walk(item, inner, here)
            elif kind == "list" and isinstance(item, list):
                for index, element in enumerate(item):
                    if isinstance(element, dict):
                        yield from walk(element, inner, (*here, index))

    yield from walk(raw, Config, ())


def runner_at(loaded: LoadedConfig, index: int) -> tuple[RunnerConfig, dict[str, Any]]:
    """The validated runner and its raw table (empty when it was not a table)."""
    runners = loaded.raw.get("runners")
    raw = runners[index] if isinstance(runners, list) and index < len(runners) else {}
    return loaded.config.runners[index], raw if isinstance(raw, dict) else {}
