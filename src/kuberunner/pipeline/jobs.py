"""Turning one resolved job configuration into :class:`PipelineJob` instances.

Covers the job keywords' shapes (script, image, services, artifacts, cache,
retry, timeout, environment, allow_failure, when...), ``parallel``/``matrix``
expansion and the job's own ``rules``/``only``/``except`` decision. Cross-job
checks (``needs`` targets, stages, cycles) live in :mod:`kuberunner.pipeline.pipeline`.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from kuberunner.pipeline.errors import Location, PipelineError, Problem
from kuberunner.pipeline.expressions import ExpressionError, evaluate
from kuberunner.pipeline.globs import exists_regex
from kuberunner.pipeline.model import (
    ArtifactsSpec,
    CacheSpec,
    EnvironmentSpec,
    ImageSpec,
    RetrySpec,
    ServiceSpec,
    When,
)
from kuberunner.pipeline.variables import expand
from kuberunner.pipeline.yamlio import LMap, LSeq

__all__ = [
    "JobShape",
    "RuleOutcome",
    "evaluate_rules",
    "matrix_instances",
    "parse_job_shape",
    "parse_variables",
]

WHEN_VALUES = ("on_success", "on_failure", "always", "manual", "delayed", "never")
_RETRY_WHEN = frozenset(
    {
        "always",
        "unknown_failure",
        "script_failure",
        "api_failure",
        "stuck_or_timeout_failure",
        "runner_system_failure",
        "runner_unsupported",
        "stale_schedule",
        "job_execution_timeout",
        "archived_failure",
        "unmet_prerequisites",
        "scheduler_failure",
        "data_integrity_failure",
    }
)
_RULE_KEYS = frozenset(
    {"if", "changes", "exists", "when", "allow_failure", "variables", "needs", "start_in", "interruptible"}
)
_REPORT_KEYS = frozenset(
    {
        "accessibility",
        "annotations",
        "api_fuzzing",
        "browser_performance",
        "coverage_report",
        "codequality",
        "container_scanning",
        "coverage_fuzzing",
        "cyclonedx",
        "dast",
        "dependency_scanning",
        "dotenv",
        "junit",
        "license_scanning",
        "load_performance",
        "metrics",
        "performance",
        "requirements",
        "repository_xray",
        "sast",
        "secret_detection",
        "terraform",
        "cluster_image_scanning",
    }
)


def _loc(cfg: LMap, key: str) -> Location:
    return cfg.value_loc(key)


def _str_list(value: Any, what: str, loc: Location, problems: list[Problem]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value
    ):
        return tuple(str(v) for v in value)
    problems.append(Problem(f"{what} should be an array of strings", loc))
    return ()


def parse_variables(
    raw: Any, what: str, loc: Location, problems: list[Problem], *, allow_description: bool
) -> tuple[dict[str, str], frozenset[str]]:
    """``variables:`` as (values, names with ``expand: false``)."""
    if raw is None:
        return {}, frozenset()
    if not isinstance(raw, dict):
        problems.append(Problem(f"{what}variables config should be a hash of key value pairs", loc))
        return {}, frozenset()
    values: dict[str, str] = {}
    raw_names: set[str] = set()
    for key, value in raw.items():
        where = raw.key_loc(key) if isinstance(raw, LMap) else loc
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_]+", key):
            problems.append(
                Problem(
                    f"{what}variables: `{key}` is not a valid variable name (letters, digits and _ only)",
                    where,
                )
            )
            continue
        if isinstance(value, dict):
            allowed = (
                {"value", "expand", "description", "options"} if allow_description else {"value", "expand"}
            )
            bad = [k for k in value if k not in allowed]
            if bad:
                problems.append(
                    Problem(f"{what}variables:{key} config contains unknown keys: {', '.join(bad)}", where)
                )
                continue
            inner = value.get("value", "")
            if value.get("expand") is False:
                raw_names.add(key)
            value = inner
        if isinstance(value, (bool, list, dict)):
            problems.append(Problem(f"{what}variables:{key} value should be a string or a number", where))
            continue
        values[key] = "" if value is None else str(value)
    return values, frozenset(raw_names)


@dataclass(frozen=True)
class RuleOutcome:
    """What ``rules`` (or ``only``/``except``) decided: ``when is None`` means the job is not created."""

    when: str | None
    #: whether the matching rule itself set ``when`` (GitLab's allow_failure default depends on it)
    when_from_rule: bool = False
    allow_failure: bool | None = None
    allow_failure_exit_codes: tuple[int, ...] | None = None
    variables: dict[str, str] | None = None
    needs: Any = None
    start_in: str | None = None
    interruptible: bool | None = None


def _exists(patterns: Any, files: Callable[[], Sequence[str]], variables: Mapping[str, str]) -> bool:
    if isinstance(patterns, dict):
        patterns = patterns.get("paths", [])
    if isinstance(patterns, str):
        patterns = [patterns]
    regexes = [exists_regex(expand(str(p), variables)) for p in patterns or [] if str(p)]
    if not regexes:
        return False
    return any(r.match(f) for f in files() for r in regexes)


def evaluate_rules(
    rules: list[Any],
    where: str,
    loc: Location,
    variables: Mapping[str, str],
    files: Callable[[], Sequence[str]],
    default_when: str,
    *,
    workflow: bool = False,
) -> RuleOutcome:
    """GitLab's first-match ``rules`` evaluation (``changes`` counts as true: see module docs)."""
    for index, rule in enumerate(rules):
        rloc = rules.item_loc(index) if isinstance(rules, LSeq) else loc
        if not isinstance(rule, dict):
            raise PipelineError(f"{where} rules: each rule must be a mapping (if:, exists:, when:...)", rloc)
        bad = [k for k in rule if k not in _RULE_KEYS]
        if bad:
            raise PipelineError(
                f"{where} rules: rule contains unknown keys: {', '.join(map(str, bad))}", rloc
            )
        if "if" in rule:
            try:
                if not evaluate(str(rule["if"]), variables):
                    continue
            except ExpressionError as exc:
                raise PipelineError(f"{where} rules:if `{rule['if']}` is invalid: {exc}", rloc) from None
        if "exists" in rule and not _exists(rule["exists"], files, variables):
            continue
        # rules:changes: a local run has no "previous pipeline" to diff against; GitLab
        # evaluates changes to true in that case (new branch, tag), so do we.
        when = rule.get("when", default_when)
        allowed = ("always", "never") if workflow else WHEN_VALUES
        if when not in allowed:
            raise PipelineError(
                f"{where} rules:when `{when}` is invalid: use one of {', '.join(allowed)}", rloc
            )
        if when == "never":
            return RuleOutcome(when=None)
        allow_failure: bool | None = None
        exit_codes: tuple[int, ...] | None = None
        if "allow_failure" in rule:
            allow_failure, exit_codes = _allow_failure(
                rule["allow_failure"], f"{where} rules:allow_failure", rloc
            )
        rule_vars: dict[str, str] | None = None
        if "variables" in rule:
            problems: list[Problem] = []
            rule_vars, _ = parse_variables(
                rule["variables"], f"{where} rules:", rloc, problems, allow_description=False
            )
            if problems:
                raise PipelineError(problems)
        interruptible = rule.get("interruptible")
        return RuleOutcome(
            when=str(when),
            when_from_rule="when" in rule,
            allow_failure=allow_failure,
            allow_failure_exit_codes=exit_codes,
            variables=rule_vars,
            needs=rule.get("needs"),
            start_in=str(rule["start_in"]) if "start_in" in rule else None,
            interruptible=interruptible if isinstance(interruptible, bool) else None,
        )
    return RuleOutcome(when=None)


def _allow_failure(value: Any, what: str, loc: Location) -> tuple[bool, tuple[int, ...]]:
    if isinstance(value, bool):
        return value, ()
    if isinstance(value, dict) and set(value) == {"exit_codes"}:
        codes = value["exit_codes"]
        codes = codes if isinstance(codes, list) else [codes]
        if all(isinstance(c, int) and not isinstance(c, bool) for c in codes):
            return False, tuple(int(c) for c in codes)
    raise PipelineError(f"{what} should be a boolean or a hash with exit_codes: (an integer or a list)", loc)


def _ref_matches(pattern: str, ref: str, is_tag: bool, project_path: str) -> bool:
    if "@" in pattern and not pattern.startswith("/"):
        pattern, _, path = pattern.partition("@")
        if path != project_path:
            return False
    keywords = {
        "branches": not is_tag,
        "tags": is_tag,
        "pushes": True,
    }
    if pattern in keywords:
        return keywords[pattern]
    if pattern in {
        "api",
        "external",
        "pipelines",
        "schedules",
        "triggers",
        "web",
        "merge_requests",
        "chats",
        "external_pull_requests",
        "main_branch",
    }:
        return False
    m = re.fullmatch(r"/(.*)/([a-z]*)", pattern, re.DOTALL)
    if m:
        from kuberunner.pipeline.expressions import compile_regex

        return compile_regex(m.group(1), m.group(2)).search(ref) is not None
    return pattern == ref


def _only_except_match(
    spec: Any,
    what: str,
    loc: Location,
    variables: Mapping[str, str],
    ref: str,
    is_tag: bool,
    project_path: str,
) -> bool:
    if isinstance(spec, (str, list)):
        spec = {"refs": spec}
    if not isinstance(spec, dict):
        raise PipelineError(
            f"{what} should be an array of refs or a hash (refs:, variables:, changes:...)", loc
        )
    bad = [k for k in spec if k not in {"refs", "variables", "changes", "kubernetes"}]
    if bad:
        raise PipelineError(f"{what} config contains unknown keys: {', '.join(map(str, bad))}", loc)
    if "refs" in spec:
        refs = spec["refs"] if isinstance(spec["refs"], list) else [spec["refs"]]
        if not any(_ref_matches(str(r), ref, is_tag, project_path) for r in refs):
            return False
    if "variables" in spec:
        exprs = spec["variables"] if isinstance(spec["variables"], list) else [spec["variables"]]
        try:
            if not any(evaluate(str(e), variables) for e in exprs):
                return False
        except ExpressionError as exc:
            raise PipelineError(f"{what}:variables is invalid: {exc}", loc) from None
    return "kubernetes" not in spec


def only_except(
    cfg: LMap, name: str, variables: Mapping[str, str], ref: str, is_tag: bool, project_path: str
) -> bool:
    """Whether ``only``/``except`` (default ``only: [branches, tags]``) keep the job."""
    only = cfg.get("only", ["branches", "tags"])
    if not _only_except_match(
        only,
        f"jobs:{name} only",
        _loc(cfg, "only") if "only" in cfg else cfg.loc,
        variables,
        ref,
        is_tag,
        project_path,
    ):
        return False
    return not (
        "except" in cfg
        and _only_except_match(
            cfg["except"], f"jobs:{name} except", _loc(cfg, "except"), variables, ref, is_tag, project_path
        )
    )


def matrix_instances(cfg: LMap, name: str) -> list[dict[str, str]] | None:
    """The ``parallel:matrix`` permutations (each an ordered dict of variables), or ``None``."""
    parallel = cfg.get("parallel")
    if not isinstance(parallel, dict):
        return None
    loc = _loc(cfg, "parallel")
    if set(parallel) != {"matrix"} or not isinstance(parallel["matrix"], list):
        raise PipelineError(f"jobs:{name} parallel should be an integer or a hash with matrix: (a list)", loc)
    instances: list[dict[str, str]] = []
    for entry in parallel["matrix"]:
        if not isinstance(entry, dict) or not entry:
            raise PipelineError(
                f"jobs:{name} parallel:matrix entries should be hashes of VARIABLE: values", loc
            )
        keys = list(entry)
        choices: list[list[str]] = []
        for key in keys:
            value = entry[key]
            values = value if isinstance(value, list) else [value]
            if not values or any(isinstance(v, (dict, list, bool)) or v is None for v in values):
                raise PipelineError(
                    f"jobs:{name} parallel:matrix:{key} should be a string, a number or a list of them", loc
                )
            choices.append([str(v) for v in values])
        for combo in itertools.product(*choices):
            instances.append(dict(zip(keys, combo, strict=True)))
    if len(instances) > 200:
        raise PipelineError(
            f"jobs:{name} parallel:matrix yields {len(instances)} jobs; GitLab allows 200", loc
        )
    return instances


@dataclass(frozen=True)
class JobShape:
    """The rules-independent parts of a job, parsed once per job (not per parallel instance)."""

    stage: str
    when: str
    allow_failure: bool | None
    allow_failure_exit_codes: tuple[int, ...]
    before_script: tuple[str, ...]
    script: tuple[str, ...]
    after_script: tuple[str, ...]
    variables: dict[str, str]
    raw_variables: frozenset[str]
    image: ImageSpec | None
    services: tuple[ServiceSpec, ...]
    artifacts: ArtifactsSpec | None
    cache: tuple[CacheSpec, ...]
    timeout: int | None
    retry: RetrySpec
    tags: tuple[str, ...]
    coverage: str | None
    interruptible: bool
    resource_group: str | None
    start_in: str | None
    pre_get_sources_script: tuple[str, ...]
    trigger: dict[str, Any] | None
    parallel_count: int | None
    dependencies: tuple[str, ...] | None


def _image(value: Any, what: str, loc: Location, problems: list[Problem]) -> ImageSpec | None:
    if isinstance(value, str):
        return ImageSpec(name=value)
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        problems.append(Problem(f"{what} should be a string or a hash with a name:", loc))
        return None
    bad = [k for k in value if k not in {"name", "entrypoint", "pull_policy", "docker", "kubernetes"}]
    if bad:
        problems.append(Problem(f"{what} config contains unknown keys: {', '.join(map(str, bad))}", loc))
    entrypoint = (
        _str_list(value["entrypoint"], f"{what}:entrypoint", loc, problems) if "entrypoint" in value else None
    )
    pull = (
        _str_list(value["pull_policy"], f"{what}:pull_policy", loc, problems)
        if "pull_policy" in value
        else None
    )
    return ImageSpec(
        name=value["name"],
        entrypoint=entrypoint,
        pull_policy=pull,
        docker=dict(value["docker"]) if isinstance(value.get("docker"), dict) else None,
        kubernetes=dict(value["kubernetes"]) if isinstance(value.get("kubernetes"), dict) else None,
    )


def _service(value: Any, what: str, loc: Location, problems: list[Problem]) -> ServiceSpec | None:
    if isinstance(value, str):
        return ServiceSpec(name=value)
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        problems.append(Problem(f"{what} should be a string or a hash with a name:", loc))
        return None
    allowed = {"name", "entrypoint", "command", "alias", "variables", "pull_policy", "docker", "kubernetes"}
    bad = [k for k in value if k not in allowed]
    if bad:
        problems.append(Problem(f"{what} config contains unknown keys: {', '.join(map(str, bad))}", loc))
    base = _image(
        {
            k: v
            for k, v in value.items()
            if k in {"name", "entrypoint", "pull_policy", "docker", "kubernetes"}
        },
        what,
        loc,
        problems,
    )
    variables, _ = parse_variables(value.get("variables"), f"{what}:", loc, problems, allow_description=False)
    command = _str_list(value["command"], f"{what}:command", loc, problems) if "command" in value else None
    return ServiceSpec(
        name=value["name"],
        entrypoint=base.entrypoint if base else None,
        pull_policy=base.pull_policy if base else None,
        docker=base.docker if base else None,
        kubernetes=base.kubernetes if base else None,
        alias=str(value.get("alias", "")),
        command=command,
        variables=variables,
    )


def _artifacts(value: Any, name: str, loc: Location, problems: list[Problem]) -> ArtifactsSpec | None:
    what = f"jobs:{name}:artifacts"
    if not isinstance(value, dict):
        problems.append(Problem(f"{what} config should be a hash", loc))
        return None
    allowed = {
        "paths",
        "exclude",
        "untracked",
        "when",
        "expire_in",
        "name",
        "expose_as",
        "reports",
        "public",
        "access",
    }
    bad = [k for k in value if k not in allowed]
    if bad:
        problems.append(Problem(f"{what} config contains unknown keys: {', '.join(map(str, bad))}", loc))
    when = value.get("when", "on_success")
    if when not in ("on_success", "on_failure", "always"):
        problems.append(Problem(f"{what}:when `{when}` should be on_success, on_failure or always", loc))
        when = "on_success"
    reports: dict[str, tuple[str, ...]] = {}
    raw_reports = value.get("reports") or {}
    if not isinstance(raw_reports, dict):
        problems.append(Problem(f"{what}:reports config should be a hash", loc))
        raw_reports = {}
    for key, paths in raw_reports.items():
        if key not in _REPORT_KEYS:
            problems.append(Problem(f"{what}:reports config contains unknown keys: {key}", loc))
            continue
        if key == "coverage_report":
            if isinstance(paths, dict) and isinstance(paths.get("path"), str):
                reports[key] = (paths["path"],)
            else:
                problems.append(
                    Problem(
                        f"{what}:reports:coverage_report should be a hash with coverage_format: and path:",
                        loc,
                    )
                )
            continue
        valid = isinstance(paths, str) or (isinstance(paths, list) and all(isinstance(p, str) for p in paths))
        if not valid:
            problems.append(
                Problem(
                    f"{what}:reports:{key} should be a string or an array of strings (got {paths!r})", loc
                )
            )
            continue
        reports[key] = (paths,) if isinstance(paths, str) else tuple(paths)
    untracked = value.get("untracked", False)
    if not isinstance(untracked, bool):
        problems.append(Problem(f"{what}:untracked should be a boolean", loc))
        untracked = False
    return ArtifactsSpec(
        paths=_str_list(value["paths"], f"{what}:paths", loc, problems) if "paths" in value else (),
        exclude=_str_list(value["exclude"], f"{what}:exclude", loc, problems) if "exclude" in value else (),
        untracked=untracked,
        when=cast(Any, when),
        expire_in=str(value["expire_in"]) if value.get("expire_in") is not None else None,
        name=str(value["name"]) if value.get("name") is not None else None,
        expose_as=str(value["expose_as"]) if value.get("expose_as") is not None else None,
        reports=reports,
    )


def _files_key(files: list[str], prefix: str | None, project_dir: Path) -> str:
    """GitLab's ``cache:key:files`` key: a hash of the last commits that changed the files."""
    shas: list[str] = []
    for file in files:
        proc = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", file],
            cwd=project_dir,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        sha = proc.stdout.strip() if proc.returncode == 0 else ""
        if sha:
            shas.append(sha)
    key = hashlib.sha1("_".join(shas).encode()).hexdigest() if shas else "default"
    return f"{prefix}-{key}" if prefix else key


def _caches(
    value: Any, name: str, loc: Location, project_dir: Path, problems: list[Problem]
) -> tuple[CacheSpec, ...]:
    entries = value if isinstance(value, list) else [value]
    if len(entries) > 4:
        problems.append(Problem(f"jobs:{name}:cache: at most 4 caches per job (found {len(entries)})", loc))
    out: list[CacheSpec] = []
    for index, entry in enumerate(entries):
        what = f"{name} cache[{index}]"
        if not isinstance(entry, dict):
            problems.append(Problem(f"{what} should be a hash (key:, paths:...)", loc))
            continue
        allowed = {"key", "paths", "policy", "when", "untracked", "fallback_keys", "unprotect"}
        bad = [k for k in entry if k not in allowed]
        if bad:
            problems.append(Problem(f"{what} config contains unknown keys: {', '.join(map(str, bad))}", loc))
        key_raw = entry.get("key", "default")
        if isinstance(key_raw, dict):
            files = key_raw.get("files")
            if not isinstance(files, list) or not 1 <= len(files) <= 2:
                count = len(files) if isinstance(files, list) else 0
                problems.append(
                    Problem(
                        f"{what}: cache:key:files should be an array of one or two file paths. Got {count}",
                        loc,
                    )
                )
                continue
            prefix = key_raw.get("prefix")
            key = _files_key(
                [str(f) for f in files], str(prefix) if prefix is not None else None, project_dir
            )
        elif isinstance(key_raw, (str, int, float)) and not isinstance(key_raw, bool):
            key = str(key_raw)
            if "/" in key or key in (".", "..", "%2F", "%2f"):
                problems.append(Problem(f"{what}: cache:key `{key}` cannot contain `/` or be `.`/`..`", loc))
        else:
            problems.append(Problem(f"{what}: cache:key should be a string or a hash with files:", loc))
            continue
        paths = entry.get("paths", [])
        if not isinstance(paths, list):
            problems.append(
                Problem(f"{what}.paths must be array (cache:paths should be an array of strings)", loc)
            )
            continue
        policy = entry.get("policy", "pull-push")
        if policy not in ("pull-push", "pull", "push"):
            problems.append(
                Problem(f"{what}: cache:policy `{policy}` should be pull-push, pull or push", loc)
            )
            policy = "pull-push"
        when = entry.get("when", "on_success")
        if when not in ("on_success", "on_failure", "always"):
            problems.append(
                Problem(f"{what}: cache:when `{when}` should be on_success, on_failure or always", loc)
            )
            when = "on_success"
        out.append(
            CacheSpec(
                key=key,
                paths=tuple(str(p) for p in paths),
                policy=policy,
                when=when,
                untracked=bool(entry.get("untracked", False)),
                fallback_keys=_str_list(entry["fallback_keys"], f"{what}:fallback_keys", loc, problems)
                if "fallback_keys" in entry
                else (),
                unprotect=bool(entry.get("unprotect", False)),
            )
        )
    return tuple(out)


_DURATION_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}


def parse_duration(text: str) -> int | None:
    """Seconds in a GitLab duration (``1h 30m``, ``90 minutes``, ``3600``); ``None`` if unreadable."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    total = 0
    found = False
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text.replace(" and ", " ")):
        if unit not in _DURATION_UNITS:
            return None
        total += int(float(number) * _DURATION_UNITS[unit])
        found = True
    leftover = re.sub(r"(\d+(?:\.\d+)?)\s*([a-z]+)|and|,|\s", "", text)
    return total if found and not leftover else None


def _retry(value: Any, what: str, loc: Location, problems: list[Problem]) -> RetrySpec:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 2:
            problems.append(Problem(f"{what} should be between 0 and 2", loc))
        return RetrySpec(max=value)
    if not isinstance(value, dict):
        problems.append(Problem(f"{what} should be an integer or a hash (max:, when:, exit_codes:)", loc))
        return RetrySpec()
    maximum = value.get("max", 0)
    if not isinstance(maximum, int) or isinstance(maximum, bool) or not 0 <= maximum <= 2:
        problems.append(Problem(f"{what}:max should be an integer between 0 and 2", loc))
        maximum = 0
    when = value.get("when", ["always"])
    when = when if isinstance(when, list) else [when]
    for w in when:
        if w not in _RETRY_WHEN:
            problems.append(Problem(f"{what}:when `{w}` is not a known failure type", loc))
    codes = value.get("exit_codes", [])
    codes = codes if isinstance(codes, list) else [codes]
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in codes):
        problems.append(Problem(f"{what}:exit_codes should be an integer or a list of integers", loc))
        codes = []
    return RetrySpec(max=maximum, when=tuple(str(w) for w in when), exit_codes=tuple(int(c) for c in codes))


def parse_job_shape(
    name: str, cfg: LMap, stages: tuple[str, ...], project_dir: Path, problems: list[Problem]
) -> JobShape:
    """Check and normalise the job keywords that do not depend on rules or parallel instances."""
    stage = cfg.get("stage", "test")
    if not isinstance(stage, str):
        problems.append(Problem(f"jobs:{name} stage should be a string", _loc(cfg, "stage")))
        stage = "test"
    elif stage not in stages:
        problems.append(
            Problem(
                f"jobs:{name} chosen stage `{stage}` does not exist; "
                f"available stages are {', '.join(stages)}",
                _loc(cfg, "stage"),
            )
        )

    when = cfg.get("when", "on_success")
    if when not in WHEN_VALUES:
        problems.append(
            Problem(
                f"jobs:{name} when `{when}` is invalid: use one of {', '.join(WHEN_VALUES)}",
                _loc(cfg, "when"),
            )
        )
        when = "on_success"
    elif when == "never":
        problems.append(
            Problem(
                f"jobs:{name} when:never can only be used in a rules section or workflow:rules",
                _loc(cfg, "when"),
            )
        )

    allow_failure: bool | None = None
    exit_codes: tuple[int, ...] = ()
    if "allow_failure" in cfg:
        try:
            allow_failure, exit_codes = _allow_failure(
                cfg["allow_failure"], f"jobs:{name} allow_failure", _loc(cfg, "allow_failure")
            )
        except PipelineError as exc:
            problems.extend(exc.problems)

    has_trigger = "trigger" in cfg
    script = tuple(cfg.get("script", ()))
    if not has_trigger:
        if "script" not in cfg and "run" not in cfg:
            problems.append(
                Problem(
                    f"jobs:{name} config should implement the script: or trigger: keyword "
                    f"({name} must have script specified)",
                    cfg.loc,
                )
            )
        elif "script" in cfg and not script:
            problems.append(
                Problem(f"jobs:{name} script can't be blank ({name} has empty script)", _loc(cfg, "script"))
            )

    variables, raw_names = parse_variables(
        cfg.get("variables"),
        f"jobs:{name} ",
        _loc(cfg, "variables") if "variables" in cfg else cfg.loc,
        problems,
        allow_description=False,
    )

    image = (
        _image(cfg["image"], f"jobs:{name}:image", _loc(cfg, "image"), problems) if "image" in cfg else None
    )
    services: list[ServiceSpec] = []
    if "services" in cfg:
        raw_services = cfg["services"]
        if not isinstance(raw_services, list):
            problems.append(Problem(f"jobs:{name}:services should be an array", _loc(cfg, "services")))
        else:
            for i, s in enumerate(raw_services):
                service = _service(s, f"jobs:{name}:services[{i}]", _loc(cfg, "services"), problems)
                if service is not None:
                    services.append(service)
    artifacts = (
        _artifacts(cfg["artifacts"], name, _loc(cfg, "artifacts"), problems) if "artifacts" in cfg else None
    )
    cache = _caches(cfg["cache"], name, _loc(cfg, "cache"), project_dir, problems) if "cache" in cfg else ()

    timeout: int | None = None
    if "timeout" in cfg:
        timeout = parse_duration(str(cfg["timeout"]))
        if timeout is None:
            problems.append(
                Problem(
                    f"jobs:{name} timeout `{cfg['timeout']}` is not a duration (e.g. 1h 30m)",
                    _loc(cfg, "timeout"),
                )
            )
    retry = (
        _retry(cfg["retry"], f"jobs:{name} retry", _loc(cfg, "retry"), problems)
        if "retry" in cfg
        else RetrySpec()
    )
    tags: tuple[str, ...] = ()
    if "tags" in cfg:
        tags = _str_list(cfg["tags"], f"jobs:{name} tags", _loc(cfg, "tags"), problems)
    coverage = cfg.get("coverage")
    if coverage is not None and (
        not isinstance(coverage, str) or not re.fullmatch(r"/.*/[a-z]*", coverage, re.DOTALL)
    ):
        problems.append(
            Problem(
                f"jobs:{name} coverage should be a regular expression in slashes (/.../)",
                _loc(cfg, "coverage"),
            )
        )
        coverage = None
    interruptible = cfg.get("interruptible", False)
    if not isinstance(interruptible, bool):
        problems.append(Problem(f"jobs:{name} interruptible should be a boolean", _loc(cfg, "interruptible")))
        interruptible = False
    hooks = cfg.get("hooks") or {}
    pre_get: tuple[str, ...] = ()
    if isinstance(hooks, dict) and "pre_get_sources_script" in hooks:
        raw_hook = hooks["pre_get_sources_script"]
        pre_get = (raw_hook,) if isinstance(raw_hook, str) else tuple(str(x) for x in raw_hook)
    trigger = cfg.get("trigger")
    if trigger is not None and not isinstance(trigger, (dict, str)):
        problems.append(
            Problem(f"jobs:{name} trigger should be a project path or a hash", _loc(cfg, "trigger"))
        )
    parallel_count: int | None = None
    if "parallel" in cfg and not isinstance(cfg["parallel"], dict):
        count = cfg["parallel"]
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 200:
            problems.append(
                Problem(
                    f"jobs:{name} parallel should be an integer from 1 to 200 or a matrix",
                    _loc(cfg, "parallel"),
                )
            )
        else:
            parallel_count = count
    dependencies: tuple[str, ...] | None = None
    if "dependencies" in cfg:
        deps = cfg["dependencies"]
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            problems.append(
                Problem(
                    f"jobs:{name} dependencies should be an array of job names", _loc(cfg, "dependencies")
                )
            )
        else:
            dependencies = tuple(deps)
    if "rules" in cfg:
        rules = cfg["rules"]
        if not isinstance(rules, list):
            problems.append(Problem(f"jobs:{name} rules should be an array of rules", _loc(cfg, "rules")))
        elif not rules:
            problems.append(
                Problem(
                    f"jobs:{name} rules: config can't be blank (remove `rules: []` or add a rule)",
                    _loc(cfg, "rules"),
                )
            )
        for key in ("only", "except"):
            if key in cfg:
                problems.append(
                    Problem(f"jobs:{name} config key may not be used with `rules`: {key}", cfg.key_loc(key))
                )
    if "needs" in cfg:
        needs = cfg["needs"]
        if not isinstance(needs, list):
            problems.append(
                Problem(
                    f"jobs:{name} needs: must be an array ({name} needs: must be an array)",
                    _loc(cfg, "needs"),
                )
            )
        elif any(n is None for n in needs):
            problems.append(
                Problem(
                    f"jobs:{name} needs: entries cannot be empty ({name} needs: entries cannot be empty)",
                    _loc(cfg, "needs"),
                )
            )
    return JobShape(
        stage=stage,
        when=when if when != "never" else "on_success",
        allow_failure=allow_failure,
        allow_failure_exit_codes=exit_codes,
        before_script=tuple(cfg.get("before_script", ())),
        script=script,
        after_script=tuple(cfg.get("after_script", ())),
        variables=variables,
        raw_variables=raw_names,
        image=image,
        services=tuple(services),
        artifacts=artifacts,
        cache=cache,
        timeout=timeout,
        retry=retry,
        tags=tags,
        coverage=coverage,
        interruptible=interruptible,
        resource_group=str(cfg["resource_group"]) if cfg.get("resource_group") is not None else None,
        start_in=str(cfg["start_in"]) if cfg.get("start_in") is not None else None,
        pre_get_sources_script=pre_get,
        trigger=trigger
        if isinstance(trigger, dict)
        else ({"project": trigger} if isinstance(trigger, str) else None),
        parallel_count=parallel_count,
        dependencies=dependencies,
    )


def environment_spec(
    raw: Any, name: str, loc: Location, variables: Callable[[str], str], problems: list[Problem]
) -> EnvironmentSpec | None:
    """``environment:`` (string or hash) with ``name``/``url`` expanded."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return EnvironmentSpec(name=variables(raw))
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        problems.append(Problem(f"jobs:{name} environment should be a string or a hash with name:", loc))
        return None
    action = raw.get("action", "start")
    if action not in ("start", "prepare", "stop", "verify", "access"):
        problems.append(
            Problem(
                f"jobs:{name} environment:action `{action}` should be start, prepare, stop, verify or access",
                loc,
            )
        )
        action = "start"
    tier = raw.get("deployment_tier")
    return EnvironmentSpec(
        name=variables(raw["name"]),
        url=variables(str(raw["url"])) if raw.get("url") is not None else None,
        action=str(action),
        deployment_tier=str(tier) if tier is not None else None,
        on_stop=str(raw["on_stop"]) if raw.get("on_stop") is not None else None,
        auto_stop_in=str(raw["auto_stop_in"]) if raw.get("auto_stop_in") is not None else None,
        kubernetes=dict(raw["kubernetes"]) if isinstance(raw.get("kubernetes"), dict) else None,
    )


def default_allow_failure(when: str, from_rules: bool) -> bool:
    """GitLab: job-level ``when: manual`` jobs may fail by default; ``rules:when: manual`` ones may not."""
    return when == "manual" and not from_rules


def ensure_when(value: str) -> When:
    if value in ("on_success", "on_failure", "always", "manual", "delayed"):
        return cast(When, value)
    return "on_success"
