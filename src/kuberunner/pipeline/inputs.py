"""``spec:inputs`` headers and ``$[[ inputs.name ]]`` interpolation.

A file whose first YAML document is ``spec:`` declares inputs (with ``default``,
``type`` string/number/boolean/array, ``options``, ``regex``, ``description``);
the second document is the configuration, interpolated after parsing: a scalar
that is exactly one ``$[[ ... ]]`` block takes the input's typed value (so an array
input can fill a whole ``rules:``), otherwise values are spliced into the text
(arrays as compact JSON). ``$[[ matrix.X ]]`` blocks are left for
``needs:parallel:matrix``.

Values for the root pipeline and for components can also come from the command
line (``--input K=V`` / ``--input component:K=V``) or an inputs file;
:class:`InputValues` holds one such source. A component-scoped value beats any
global one; among sources of the same scope the first given wins.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kuberunner.pipeline.errors import Location, PipelineError
from kuberunner.pipeline.expressions import ExpressionError, compile_regex
from kuberunner.pipeline.yamlio import LMap, LSeq, load_documents

__all__ = ["InputSpec", "InputValues", "interpolate", "parse_spec", "resolve_inputs"]

_BLOCK = re.compile(r"\$\[\[((?:(?!\]\]).)*)\]\]")
_TYPES = ("string", "number", "boolean", "array")
_MAX_FUNCTIONS = 3


@dataclass
class InputValues:
    """Input values from one source: ``global_values`` for any file, ``scoped`` per component name."""

    global_values: dict[str, Any] = field(default_factory=dict)
    scoped: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: Mapping[str, str] | Sequence[str]) -> InputValues:
        """Parse ``--input`` values (``K=V`` or ``component:K=V``; ``V`` is read as YAML)."""
        pairs: list[tuple[str, str]] = []
        if isinstance(args, Mapping):
            pairs = list(args.items())
        else:
            for arg in args:
                key, sep, value = arg.partition("=")
                if not sep:
                    raise PipelineError(f"--input `{arg}` must look like NAME=VALUE or COMPONENT:NAME=VALUE")
                pairs.append((key, value))
        values = cls()
        for key, raw in pairs:
            value = _yaml_scalar(raw)
            scope, sep, name = key.partition(":")
            if sep:
                values.scoped.setdefault(scope, {})[name] = value
            else:
                values.global_values[key] = value
        return values

    @classmethod
    def from_file(cls, path: Path) -> InputValues:
        """Read an inputs file: top-level scalars (and ``_global:``) are global, mappings per component."""
        docs = load_documents(path.read_text(encoding="utf-8"), path.name)
        data = docs[0] if docs else None
        values = cls()
        if data is None:
            return values
        if not isinstance(data, dict):
            raise PipelineError(
                "an inputs file must be a mapping of input names to values", Location(path.name, 1, 1)
            )
        for key, value in data.items():
            if key == "_global" and isinstance(value, dict):
                values.global_values.update(value)
            elif isinstance(value, dict):
                values.scoped.setdefault(str(key), {}).update(value)
            else:
                values.global_values[str(key)] = value
        return values


def _yaml_scalar(raw: str) -> Any:
    """A command-line input value read as YAML (``3`` is a number, ``"3"`` a string, ``[a]`` a list)."""
    try:
        docs = load_documents(raw, "--input")
    except PipelineError:
        return raw
    if len(docs) != 1 or docs[0] is None or isinstance(docs[0], dict):
        return raw
    return docs[0]


@dataclass(frozen=True)
class InputSpec:
    """One declared input."""

    name: str
    type: str = "string"
    default: Any = None
    has_default: bool = False
    options: tuple[Any, ...] | None = None
    regex: str | None = None


def parse_spec(header: Any, file: str) -> dict[str, InputSpec]:
    """The declared inputs of a ``spec:`` header document."""
    loc = header.loc if isinstance(header, LMap) else Location(file, 1, 1)
    if not isinstance(header, dict) or set(header) - {"spec"}:
        raise PipelineError("the header document may only contain `spec:`", loc)
    spec = header.get("spec")
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise PipelineError("header:spec config should be a hash", loc)
    unknown = set(spec) - {"inputs", "include", "component"}
    if unknown:
        raise PipelineError(f"header:spec config contains unknown keys: {', '.join(sorted(unknown))}", loc)
    inputs = spec.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise PipelineError("header:spec:inputs config should be a hash", loc)
    result: dict[str, InputSpec] = {}
    for name, decl in inputs.items():
        where = inputs.key_loc(name) if isinstance(inputs, LMap) else loc
        if decl is None:
            result[str(name)] = InputSpec(str(name))
            continue
        if not isinstance(decl, dict):
            raise PipelineError(f"header:spec:inputs:{name} config should be a hash", where)
        bad = set(decl) - {"default", "type", "options", "regex", "description", "rules"}
        if bad:
            raise PipelineError(
                f"header:spec:inputs:{name} config contains unknown keys: {', '.join(sorted(bad))}", where
            )
        typ = decl.get("type", "string")
        if typ not in _TYPES:
            raise PipelineError(f"header:spec:inputs:{name} input type unknown value: {typ}", where)
        options = decl.get("options")
        if options is not None and not isinstance(options, list):
            raise PipelineError(f"header:spec:inputs:{name} options should be an array", where)
        regex = decl.get("regex")
        result[str(name)] = InputSpec(
            name=str(name),
            type=typ,
            default=decl.get("default"),
            has_default="default" in decl,
            options=tuple(options) if options is not None else None,
            regex=str(regex) if regex is not None else None,
        )
    return result


def _type_ok(spec: InputSpec, value: Any) -> bool:
    if spec.type == "string":
        return isinstance(value, str)
    if spec.type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec.type == "boolean":
        return isinstance(value, bool)
    return isinstance(value, list)


def resolve_inputs(
    specs: Mapping[str, InputSpec],
    given: Mapping[str, Any],
    file: str,
    loc: Location,
) -> dict[str, Any]:
    """Check ``given`` against ``specs`` (GitLab's messages) and fill in defaults."""
    prefix = f"`{file}`: "
    unknown = [k for k in given if k not in specs]
    if unknown:
        raise PipelineError(prefix + f"unknown input arguments: {', '.join(unknown)}", loc)
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in given:
            value = given[name]
        elif spec.has_default:
            value = spec.default
        else:
            raise PipelineError(prefix + f"`{name}` input: required value has not been provided.", loc)
        if not _type_ok(spec, value):
            raise PipelineError(prefix + f"`{name}` input: provided value is not a {spec.type}.", loc)
        if spec.options is not None:
            for item in value if isinstance(value, list) else [value]:
                if item not in spec.options:
                    raise PipelineError(
                        prefix + f"`{name}` input: `{item}` cannot be used because it is not in the list of "
                        "allowed options.",
                        loc,
                    )
        if spec.regex is not None and isinstance(value, str):
            try:
                pattern = compile_regex(spec.regex.strip("/") if spec.regex.startswith("/") else spec.regex)
            except ExpressionError:
                raise PipelineError(
                    prefix + f"`{name}` input: regex `{spec.regex}` is not a valid regular expression.", loc
                ) from None
            if pattern.search(value) is None:
                raise PipelineError(
                    prefix + f"`{name}` input: `{value}` does not match required regex: {spec.regex}.", loc
                )
        values[name] = value
    return values


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    if value is None:
        return ""
    return str(value)


def _apply_functions(
    value: Any, functions: list[str], expand: Callable[[str], str], fail: Callable[[str], None]
) -> Any:
    for fn in functions:
        m = re.fullmatch(r"(\w+)\s*(?:\((.*)\))?", fn.strip())
        if m is None:
            fail(f"invalid interpolation function `{fn.strip()}`")
            return value
        name, args = m.group(1), m.group(2)
        text = _render(value)
        if name == "expand_vars":
            value = expand(text)
        elif name == "posix_escape":
            value = shlex.quote(text) if text else "''"
        elif name == "truncate":
            nums = [a.strip() for a in (args or "").split(",")]
            if len(nums) != 2 or not all(n.isdigit() for n in nums):
                fail("truncate needs two numbers: truncate(offset, length)")
            offset, length = int(nums[0]), int(nums[1])
            value = text[offset : offset + length]
        else:
            fail(f"unknown interpolation function `{name}`")
    return value


def interpolate(
    node: Any,
    values: Mapping[str, Any],
    file: str,
    expand: Callable[[str], str],
) -> Any:
    """Replace ``$[[ inputs.x ]]`` blocks in keys and string values of ``node`` (a new tree is returned)."""

    def fail(message: str, loc: Location | None = None) -> None:
        raise PipelineError(f"`{file}`: {message}.", loc)

    def block_value(expr: str, loc: Location | None) -> tuple[bool, Any]:
        parts = expr.split("|")
        head = parts[0].strip()
        if not head.startswith("inputs."):
            return False, None
        if len(parts) - 1 > _MAX_FUNCTIONS:
            fail("too many functions in interpolation block", loc)
        key = head[len("inputs.") :].strip()
        if key not in values:
            fail(f"unknown interpolation key: `{key}`", loc)
        return True, _apply_functions(values[key], parts[1:], expand, lambda m: fail(m, loc))

    def text(s: str, loc: Location | None) -> Any:
        whole = _BLOCK.fullmatch(s)
        if whole is not None:
            ok, value = block_value(whole.group(1), loc)
            if ok:
                return value

        def sub(m: re.Match[str]) -> str:
            ok, value = block_value(m.group(1), loc)
            return _render(value) if ok else m.group(0)

        return _BLOCK.sub(sub, s)

    def walk(value: Any, loc: Location | None) -> Any:
        if isinstance(value, LMap):
            out = LMap(loc=value.loc)
            for k, v in value.items():
                new_key = text(k, value.key_loc(k)) if isinstance(k, str) else k
                if isinstance(new_key, (list, dict)):
                    new_key = _render(new_key)
                out.set_located(new_key, walk(v, value.value_loc(k)), value.key_loc(k), value.value_loc(k))
            return out
        if isinstance(value, LSeq):
            seq = LSeq(loc=value.loc)
            for i, item in enumerate(value):
                seq.append(walk(item, value.item_loc(i)))
                seq.item_locs.append(value.item_loc(i))
            return seq
        if isinstance(value, str):
            return text(value, loc)
        return value

    return walk(node, None)
