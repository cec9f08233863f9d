"""From the merged YAML to a resolved configuration: ``!reference``, ``extends``,
``default:`` inheritance, normalisation and GitLab's structural checks.

GitLab's order is: includes, then ``extends``, then ``!reference`` tags. Here a
reference is resolved against the *extended* target and ``extends`` merges the
parents' *resolved* content, which gives the same result for every valid file
while letting a template's ``variables: !reference [...]`` merge with the job's
own ``variables`` (as gitlab-ci-local does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kuberunner.pipeline.errors import Location, PipelineError, Problem
from kuberunner.pipeline.loader import deep_merge
from kuberunner.pipeline.yamlio import LMap, LSeq, Reference

__all__ = [
    "DEFAULT_KEYS",
    "JOB_KEYS",
    "RESERVED_KEYS",
    "ResolvedConfig",
    "flatten",
    "resolve_config",
]

RESERVED_KEYS = frozenset(
    {
        "image",
        "services",
        "stages",
        "types",
        "before_script",
        "after_script",
        "variables",
        "cache",
        "include",
        "default",
        "workflow",
        "spec",
    }
)
DEFAULT_KEYS = frozenset(
    {
        "after_script",
        "artifacts",
        "before_script",
        "cache",
        "hooks",
        "id_tokens",
        "image",
        "interruptible",
        "retry",
        "services",
        "tags",
        "timeout",
    }
)
LEGACY_GLOBAL_KEYS = ("image", "services", "cache", "before_script", "after_script")
JOB_KEYS = frozenset(
    {
        "after_script",
        "allow_failure",
        "artifacts",
        "before_script",
        "cache",
        "coverage",
        "dast_configuration",
        "dependencies",
        "environment",
        "extends",
        "hooks",
        "identity",
        "id_tokens",
        "image",
        "inherit",
        "interruptible",
        "manual_confirmation",
        "needs",
        "only",
        "except",
        "pages",
        "parallel",
        "release",
        "resource_group",
        "retry",
        "rules",
        "run",
        "script",
        "secrets",
        "services",
        "stage",
        "start_in",
        "tags",
        "timeout",
        "trigger",
        "variables",
        "when",
    }
)
SCRIPT_KEYS = ("before_script", "script", "after_script")
MAX_EXTENDS_DEPTH = 11
MAX_REFERENCE_DEPTH = 10
MAX_SCRIPT_NESTING = 10
DEFAULT_STAGES = ("build", "test", "deploy")


def flatten(value: Any) -> Any:
    """Flatten nested sequences (from ``!reference``) everywhere in ``value``."""
    if isinstance(value, LMap):
        out = LMap(loc=value.loc)
        for k, v in value.items():
            out.set_located(k, flatten(v), value.key_locs.get(k), value.value_locs.get(k))
        return out
    if isinstance(value, dict):
        return {k: flatten(v) for k, v in value.items()}
    if isinstance(value, list):
        seq = LSeq(loc=value.loc if isinstance(value, LSeq) else Location(""))
        for i, item in enumerate(value):
            here = value.item_loc(i) if isinstance(value, LSeq) else seq.loc
            if isinstance(item, list):
                inner = flatten(item)
                seq.extend(inner)
                seq.item_locs.extend(inner.item_locs if isinstance(inner, LSeq) else [here] * len(inner))
            else:
                seq.append(flatten(item))
                seq.item_locs.append(here)
        return seq
    return value


def _nesting(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_nesting(v) for v in value), default=0)
    return 0


@dataclass
class ResolvedConfig:
    """The configuration with references/extends/defaults applied; jobs normalised, in file order."""

    stages: tuple[str, ...]
    variables: LMap
    workflow: LMap | None
    jobs: dict[str, LMap]
    root_loc: Location
    hidden: dict[str, Any] = field(default_factory=dict)


class _Resolver:
    def __init__(self, raw: LMap) -> None:
        self.raw = raw
        self.done: dict[str, Any] = {}
        self.depth: dict[str, int] = {}
        self.active: list[str] = []

    def expanded(self, name: str, loc: Location) -> Any:
        if name in self.done:
            return self.done[name]
        if name in self.active:
            cycle = " -> ".join([*self.active[self.active.index(name) :], name])
            raise PipelineError(
                f"{name}: circular dependency detected in `extends` or `!reference` ({cycle})", loc
            )
        self.active.append(name)
        try:
            body = self.resolve(self.raw[name], 0)
            depth = 0
            if isinstance(body, LMap) and "extends" in body and name not in RESERVED_KEYS:
                body, depth = self._extend(name, body)
            self.done[name] = body
            self.depth[name] = depth
        finally:
            self.active.pop()
        return body

    def _extend(self, name: str, body: LMap) -> tuple[LMap, int]:
        parents = body["extends"]
        ext_loc = body.value_loc("extends")
        if isinstance(parents, str):
            parents = [parents]
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise PipelineError(f"{name}: extends must be a job name or a list of job names", ext_loc)
        acc: Any = LMap(loc=body.loc)
        depth = 0
        for parent in parents:
            if parent not in self.raw:
                raise PipelineError(f"{name}: unknown key in `extends`: `{parent}` is not defined", ext_loc)
            if parent == name:
                raise PipelineError(
                    f"{name}: circular dependency detected in `extends` ({name} extends itself)", ext_loc
                )
            parent_body = self.expanded(parent, ext_loc)
            if not isinstance(parent_body, dict):
                raise PipelineError(f"{name}: extends `{parent}`, which is not a mapping", ext_loc)
            depth = max(depth, self.depth.get(parent, 0) + 1)
            acc = deep_merge(acc, parent_body)
        if depth > MAX_EXTENDS_DEPTH:
            raise PipelineError(
                f"{name}: `extends` is nested more than {MAX_EXTENDS_DEPTH} levels deep", ext_loc
            )
        own = LMap(loc=body.loc)
        for key, value in body.items():
            if key != "extends":
                own.set_located(key, value, body.key_locs.get(key), body.value_locs.get(key))
        merged = deep_merge(acc, own)
        assert isinstance(merged, LMap)
        merged.loc = body.loc
        return merged, depth

    def lookup(self, ref: Reference, depth: int) -> Any:
        shown = "!reference [" + ", ".join(ref.path) + "]"
        if depth >= MAX_REFERENCE_DEPTH:
            raise PipelineError(
                f"{shown}: !reference tags are nested more than {MAX_REFERENCE_DEPTH} levels deep", ref.loc
            )
        head = ref.path[0]
        if head not in self.raw:
            raise PipelineError(f"{shown} could not be found: `{head}` is not defined", ref.loc)
        node = self.expanded(head, ref.loc)
        for key in ref.path[1:]:
            if not isinstance(node, dict) or key not in node:
                raise PipelineError(f"{shown} could not be found: no `{key}` there", ref.loc)
            node = node[key]
        return node

    def resolve(self, value: Any, depth: int) -> Any:
        if isinstance(value, Reference):
            return self.lookup(value, depth)
        if isinstance(value, LMap):
            out = LMap(loc=value.loc)
            for k, v in value.items():
                out.set_located(k, self.resolve(v, depth), value.key_locs.get(k), value.value_locs.get(k))
            return out
        if isinstance(value, LSeq):
            seq = LSeq(loc=value.loc)
            for i, item in enumerate(value):
                seq.append(self.resolve(item, depth))
                seq.item_locs.append(value.item_loc(i))
            return seq
        return value


def _stages(raw: Any, loc: Location) -> tuple[str, ...]:
    if raw is None:
        stages = list(DEFAULT_STAGES)
    elif not isinstance(raw, list):
        raise PipelineError("stages: must be an array of stage names", loc)
    else:
        flat = flatten(raw)
        for i, stage in enumerate(flat):
            if not isinstance(stage, str):
                where = flat.item_loc(i) if isinstance(flat, LSeq) else loc
                raise PipelineError("stages: must be an array of stage names (strings)", where)
        stages = list(dict.fromkeys(flat))
    stages = [s for s in stages if s not in (".pre", ".post")]
    return (".pre", *stages, ".post")


def _inherit_filter(job: LMap, key: str, loc: Location) -> tuple[bool, frozenset[str] | None]:
    """``inherit:default`` / ``inherit:variables``: (inherit all?, or only these names)."""
    inherit = job.get("inherit")
    if inherit is None:
        return True, None
    if not isinstance(inherit, dict):
        raise PipelineError("inherit must be a mapping with default: and/or variables:", loc)
    value = inherit.get(key, True)
    if isinstance(value, bool):
        return value, None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return True, frozenset(value)
    raise PipelineError(f"inherit:{key} must be true, false or a list of names", loc)


def resolve_config(merged: LMap, problems: list[Problem]) -> ResolvedConfig:
    """Apply references, extends and defaults; structural problems of jobs are appended to
    ``problems`` (so they are reported together with later checks), fatal ones raised."""
    resolver = _Resolver(merged)
    for name in merged:
        resolver.expanded(name, merged.key_loc(name))
    done = resolver.done
    root_loc = merged.loc

    if "stages" in done:
        stages = _stages(done["stages"], merged.value_loc("stages"))
    elif "types" in done:
        stages = _stages(done["types"], merged.value_loc("types"))
    else:
        stages = _stages(None, root_loc)

    variables = done.get("variables")
    if variables is None:
        variables = LMap(loc=root_loc)
    elif not isinstance(variables, LMap):
        raise PipelineError(
            "variables: config should be a hash of key value pairs", merged.value_loc("variables")
        )

    workflow = done.get("workflow")
    if workflow is not None and not isinstance(workflow, LMap):
        raise PipelineError("workflow: config should be a hash", merged.value_loc("workflow"))

    default = done.get("default")
    if default is None:
        default = LMap(loc=root_loc)
    elif not isinstance(default, LMap):
        raise PipelineError("default: config should be a hash", merged.value_loc("default"))
    for key in default:
        if key not in DEFAULT_KEYS:
            problems.append(Problem(f"default config contains unknown keys: {key}", default.key_loc(key)))
    defaults = LMap(loc=default.loc)
    for key in LEGACY_GLOBAL_KEYS:
        if key in done and done[key] is not None:
            defaults.set_located(key, done[key], merged.key_locs.get(key), merged.value_locs.get(key))
    for key, value in default.items():
        if value is not None:
            defaults.set_located(key, value, default.key_locs.get(key), default.value_locs.get(key))

    jobs: dict[str, LMap] = {}
    hidden: dict[str, Any] = {}
    for name in merged:
        if not isinstance(name, str):
            problems.append(Problem(f"job name `{name}` must be a string", merged.key_loc(name)))
            continue
        if name in RESERVED_KEYS:
            continue
        body = done[name]
        if name.startswith("."):
            hidden[name] = body
            continue
        if not isinstance(body, LMap):
            problems.append(
                Problem(
                    f"jobs:{name} config should be a hash with a script: (or trigger:) keyword, "
                    f"not {type(body).__name__ if body is not None else 'null'}",
                    merged.key_loc(name),
                )
            )
            continue
        try:
            jobs[name] = _normalize_job(name, body, defaults, problems)
            jobs[name].loc = merged.key_loc(name)
        except PipelineError as exc:
            problems.extend(exc.problems)
    return ResolvedConfig(
        stages=stages, variables=variables, workflow=workflow, jobs=jobs, root_loc=root_loc, hidden=hidden
    )


def _normalize_job(name: str, body: LMap, defaults: LMap, problems: list[Problem]) -> LMap:
    job = LMap(loc=body.loc)
    for key, value in body.items():
        if key == "extends" or value is None:
            continue
        job.set_located(key, value, body.key_locs.get(key), body.value_locs.get(key))
    unknown = [k for k in job if k not in JOB_KEYS]
    for key in unknown:
        problems.append(Problem(f"jobs:{name} config contains unknown keys: {key}", job.key_loc(key)))
    inherit_all, inherit_only = _inherit_filter(job, "default", job.key_loc("inherit"))
    if inherit_all:
        for key, value in defaults.items():
            if key in job or (inherit_only is not None and key not in inherit_only):
                continue
            job.set_located(key, value, defaults.key_locs.get(key), defaults.value_locs.get(key))
    for key in SCRIPT_KEYS:
        if key not in job:
            continue
        value = job[key]
        if _nesting(value) > MAX_SCRIPT_NESTING:
            problems.append(
                Problem(
                    f"{name}.{key} config should be string or a nested array of strings up to "
                    f"{MAX_SCRIPT_NESTING} level deep",
                    job.value_loc(key),
                )
            )
            continue
        job.set_located(key, _script_list(name, key, value, job.value_loc(key), problems), None, None)
    flat = flatten(job)
    assert isinstance(flat, LMap)
    return flat


def _script_list(name: str, key: str, value: Any, loc: Location, problems: list[Problem]) -> LSeq:
    if isinstance(value, str):
        if value == "" and key == "script":
            problems.append(Problem(f"jobs:{name} {key} can't be blank (empty string)", loc))
        seq = LSeq([value], loc=loc)
        seq.item_locs.append(loc)
        return seq
    if not isinstance(value, list):
        problems.append(
            Problem(f"jobs:{name} {key} config should be a string or a nested array of strings", loc)
        )
        return LSeq(loc=loc)
    flat = flatten(value)
    assert isinstance(flat, LSeq)
    for i, item in enumerate(flat):
        if not isinstance(item, str):
            problems.append(
                Problem(
                    f"jobs:{name} {key} config should be a string or a nested array of strings "
                    f"(item {i + 1} is {type(item).__name__})",
                    flat.item_loc(i),
                )
            )
    return flat
