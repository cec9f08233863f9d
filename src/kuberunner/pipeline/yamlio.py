"""YAML loading that remembers where every value came from.

ruamel.yaml's round-trip loader gives line/column information; we convert its
nodes into plain ``dict``/``list`` subclasses (:class:`LMap`, :class:`LSeq`) that
carry a :class:`Location` for themselves and for each key/item, so errors found
long after loading (a bad ``needs`` after ``extends`` merged three files) still
point at the line that wrote it. ``!reference [job, key]`` tags become
:class:`Reference` values, resolved later.
"""

from __future__ import annotations

import datetime
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from kuberunner.pipeline.errors import Location, PipelineError

__all__ = ["LMap", "LSeq", "Reference", "load_documents", "loc_of", "plain"]


class LMap(dict[Any, Any]):
    """A mapping with the location of itself and of each of its keys and values."""

    loc: Location
    key_locs: dict[Any, Location]
    value_locs: dict[Any, Location]

    def __init__(self, *args: Any, loc: Location | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loc = loc or Location("")
        self.key_locs = {}
        self.value_locs = {}

    def key_loc(self, key: Any) -> Location:
        return self.key_locs.get(key, self.loc)

    def value_loc(self, key: Any) -> Location:
        return self.value_locs.get(key, self.key_loc(key))

    def set_located(self, key: Any, value: Any, key_loc: Location | None, value_loc: Location | None) -> None:
        self[key] = value
        if key_loc is not None:
            self.key_locs[key] = key_loc
        if value_loc is not None:
            self.value_locs[key] = value_loc


class LSeq(list[Any]):
    """A sequence with the location of itself and of each item."""

    loc: Location
    item_locs: list[Location]

    def __init__(self, *args: Any, loc: Location | None = None) -> None:
        super().__init__(*args)
        self.loc = loc or Location("")
        self.item_locs = []

    def item_loc(self, index: int) -> Location:
        if 0 <= index < len(self.item_locs):
            return self.item_locs[index]
        return self.loc


class Reference:
    """An unresolved ``!reference [name, key, ...]`` tag."""

    __slots__ = ("loc", "path")

    def __init__(self, path: list[str], loc: Location) -> None:
        self.path = path
        self.loc = loc

    def __repr__(self) -> str:
        return f"!reference {self.path!r}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reference) and other.path == self.path

    def __hash__(self) -> int:
        return hash(tuple(self.path))


def loc_of(value: Any, default: Location | None = None) -> Location | None:
    """The location of a located container or reference, else ``default``."""
    if isinstance(value, (LMap, LSeq, Reference)):
        return value.loc
    return default


def plain(value: Any) -> Any:
    """A deep copy made of plain dicts/lists (for JSON, previews and comparisons)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, Reference):
        return {"!reference": list(value.path)}
    return value


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def load_documents(text: str, file: str) -> list[Any]:
    """Parse every YAML document in ``text``; a YAML error becomes a located :class:`PipelineError`."""
    try:
        raw_docs = list(_yaml().load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark is not None else Location(file)
        detail = " ".join(p for p in (exc.context, exc.problem) if p)
        raise PipelineError(f"invalid YAML: {detail}", loc) from None
    except YAMLError as exc:
        raise PipelineError(f"invalid YAML: {exc}", Location(file)) from None
    return [_convert(d, file, Location(file, 1, 1)) for d in raw_docs]


def _convert(node: Any, file: str, here: Location) -> Any:
    if isinstance(node, CommentedSeq):
        loc = Location(file, node.lc.line + 1, node.lc.col + 1) if node.lc.line is not None else here
        tag = getattr(getattr(node, "tag", None), "value", None)
        if tag == "!reference":
            path = [str(_convert(x, file, loc)) for x in node]
            if not path:
                raise PipelineError("!reference needs at least one key, as in !reference [.job, script]", loc)
            return Reference(path, loc)
        if tag is not None and not tag.startswith("tag:yaml.org,2002:"):
            raise PipelineError(f"unknown YAML tag `{tag}` (only !reference is supported)", loc)
        seq = LSeq(loc=loc)
        for i, item in enumerate(node):
            try:
                line, col = node.lc.item(i)
                item_loc = Location(file, line + 1, col + 1)
            except (KeyError, TypeError, IndexError):
                item_loc = loc
            seq.append(_convert(item, file, item_loc))
            seq.item_locs.append(item_loc)
        return seq
    if isinstance(node, CommentedMap):
        loc = Location(file, node.lc.line + 1, node.lc.col + 1) if node.lc.line is not None else here
        tag = getattr(getattr(node, "tag", None), "value", None)
        if tag is not None and not tag.startswith("tag:yaml.org,2002:"):
            raise PipelineError(f"unknown YAML tag `{tag}` (only !reference is supported)", loc)
        mapping = LMap(loc=loc)
        for key, value in node.items():
            pos = node.lc.data.get(key)
            key_loc = Location(file, pos[0] + 1, pos[1] + 1) if pos else loc
            value_loc = Location(file, pos[2] + 1, pos[3] + 1) if pos else loc
            plain_key = _scalar(key, file, key_loc)
            if isinstance(plain_key, (dict, list)):
                raise PipelineError("a mapping key must be a plain value", key_loc)
            mapping.set_located(plain_key, _convert(value, file, value_loc), key_loc, value_loc)
        return mapping
    return _scalar(node, file, here)


def _scalar(node: Any, file: str, here: Location) -> Any:
    if isinstance(node, TaggedScalar):
        tag = node.tag.value if node.tag is not None else ""
        value = node.value
        if tag == "tag:yaml.org,2002:str":
            return str(value)
        if tag == "tag:yaml.org,2002:int":
            return int(str(value), 0)
        if tag == "tag:yaml.org,2002:float":
            return float(str(value))
        if tag == "tag:yaml.org,2002:bool":
            return str(value).lower() == "true"
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag == "!reference":
            raise PipelineError("!reference must be a sequence, as in !reference [.job, script]", here)
        raise PipelineError(f"unknown YAML tag `{tag}` (only !reference is supported)", here)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, (datetime.date, datetime.datetime)):
        return node.isoformat()
    return node
