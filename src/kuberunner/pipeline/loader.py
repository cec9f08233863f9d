"""Reading pipeline files: ``spec:inputs`` headers, ``include`` (local, wildcards,
same-project components and ``project:`` files, nested) and GitLab's deep merge.

Everything is resolved against the project directory; nothing is fetched from a
network, so ``include:remote``/``template`` and other projects' files are
reported as errors that say so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kuberunner.pipeline.errors import Location, PipelineError
from kuberunner.pipeline.expressions import ExpressionError, evaluate
from kuberunner.pipeline.globs import include_regex, is_glob, project_files
from kuberunner.pipeline.inputs import InputValues, interpolate, parse_spec, resolve_inputs
from kuberunner.pipeline.variables import expand
from kuberunner.pipeline.yamlio import LMap, LSeq, load_documents

__all__ = ["LoadContext", "deep_merge", "load_root"]

MAX_INCLUDE_DEPTH = 100
MAX_INCLUDES = 150
_YAML_SUFFIXES = (".yml", ".yaml")


@dataclass
class LoadContext:
    """What include resolution may use: the project, variables for paths/rules, input sources."""

    project_dir: Path
    variables: Mapping[str, str]
    input_sources: Sequence[InputValues] = ()
    server_fqdn: str = ""
    project_path: str = ""
    included: int = 0


def deep_merge(base: Any, override: Any) -> Any:
    """GitLab's merge: mappings merge key by key (recursively), anything else is replaced."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    out = LMap(loc=override.loc if isinstance(override, LMap) else Location(""))
    for src in (base, override):
        for key, value in src.items():
            if key in out and isinstance(out[key], dict) and isinstance(value, dict):
                merged = deep_merge(out[key], value)
            else:
                merged = value
            key_loc = src.key_locs.get(key) if isinstance(src, LMap) else None
            value_loc = src.value_locs.get(key) if isinstance(src, LMap) else None
            out.set_located(key, merged, key_loc, value_loc)
    return out


def _read_file(ctx: LoadContext, rel: str, loc: Location | None) -> list[Any]:
    path = ctx.project_dir / rel
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"`{rel}` does not exist in {ctx.project_dir}", loc) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"`{rel}` cannot be read: {exc}", loc) from None
    return load_documents(text, rel)


def _split_header(docs: list[Any], rel: str) -> tuple[Any, Any]:
    if len(docs) >= 2 and isinstance(docs[0], dict) and "spec" in docs[0]:
        if len(docs) > 2:
            raise PipelineError(
                "a pipeline file may hold at most two YAML documents: `spec:` and the config",
                Location(rel, 1, 1),
            )
        return docs[0], docs[1]
    if len(docs) > 1:
        extra = next((d for d in docs[1:] if d is not None), None)
        if extra is not None:
            loc = extra.loc if isinstance(extra, LMap) else Location(rel, 1, 1)
            raise PipelineError(
                "only the first YAML document is read unless it is a `spec:` header; "
                "remove the extra `---` document",
                loc,
            )
    return None, docs[0] if docs else None


def _load_file(
    ctx: LoadContext,
    rel: str,
    loc: Location | None,
    given_inputs: Mapping[str, Any] | None,
    scoped_name: str | None,
    root: bool,
) -> LMap:
    header, config = _split_header(_read_file(ctx, rel, loc), rel)
    if config is None:
        config = LMap(loc=Location(rel, 1, 1))
    if header is not None:
        specs = parse_spec(header, rel)
        values: dict[str, Any] = {}
        if root or scoped_name is not None:
            # command-line/file inputs reach the root file and components, not include:local
            for source in reversed(ctx.input_sources):
                values.update({k: v for k, v in source.global_values.items() if k in specs})
        values.update(given_inputs or {})
        if scoped_name is not None:
            for source in reversed(ctx.input_sources):
                values.update(source.scoped.get(scoped_name, {}))
        header_loc = header.loc if isinstance(header, LMap) else Location(rel, 1, 1)
        resolved = resolve_inputs(specs, values, rel, header_loc)
        config = interpolate(config, resolved, rel, lambda s: expand(s, ctx.variables, keep_unknown=True))
    elif given_inputs:
        raise PipelineError(
            f"`{rel}`: given inputs not defined in the `spec` section of the included configuration file", loc
        )
    if not isinstance(config, dict):
        where = config.loc if isinstance(config, LSeq) else Location(rel, 1, 1)
        raise PipelineError(f"`{rel}`: the configuration must be a mapping of keywords and jobs", where)
    if not isinstance(config, LMap):
        config = LMap(config, loc=Location(rel, 1, 1))
    return config


def load_root(ctx: LoadContext, rel: str) -> LMap:
    """Load the pipeline file ``rel`` (relative to the project) with all its includes merged in."""
    if not (ctx.project_dir / rel).is_file():
        raise PipelineError(f"{ctx.project_dir / rel} could not be found")
    config = _load_file(ctx, rel, None, None, None, root=True)
    return _with_includes(ctx, config, rel, depth=0)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _with_includes(ctx: LoadContext, config: LMap, rel: str, depth: int) -> LMap:
    if "include" not in config:
        return config
    include = config["include"]
    inc_loc = config.value_loc("include")
    body = LMap(loc=config.loc)
    for key, value in config.items():
        if key != "include":
            body.set_located(key, value, config.key_locs.get(key), config.value_locs.get(key))
    if depth >= MAX_INCLUDE_DEPTH:
        raise PipelineError(
            f"include nesting is deeper than {MAX_INCLUDE_DEPTH} levels (an include cycle?)", inc_loc
        )
    merged: Any = LMap(loc=config.loc)
    items = _as_list(include)
    for index, item in enumerate(items):
        item_loc = include.item_loc(index) if isinstance(include, LSeq) else inc_loc
        for child_rel, child in _resolve_item(ctx, item, item_loc):
            merged = deep_merge(merged, _with_includes(ctx, child, child_rel, depth + 1))
    result = deep_merge(merged, body)
    assert isinstance(result, LMap)
    return result


_SCHEMES = ("http://", "https://")


def _resolve_item(ctx: LoadContext, item: Any, loc: Location) -> list[tuple[str, LMap]]:
    if isinstance(item, str):
        if item.startswith(_SCHEMES):
            item = LMap({"remote": item}, loc=loc)
        else:
            item = LMap({"local": item}, loc=loc)
    if not isinstance(item, dict):
        raise PipelineError("include entries must be a file path or a mapping (local:, component:, ...)", loc)
    known = {
        "local",
        "remote",
        "project",
        "file",
        "ref",
        "template",
        "component",
        "inputs",
        "rules",
        "cache",
        "integrity",
    }
    unknown = sorted(str(k) for k in item if k not in known)
    if unknown:
        raise PipelineError(f"include config contains unknown keys: {', '.join(unknown)}", loc)
    if "rules" in item and not _include_rules_match(ctx, item["rules"], loc):
        return []
    inputs = item.get("inputs")
    if inputs is not None and not isinstance(inputs, dict):
        raise PipelineError("include:inputs must be a mapping of input names to values", loc)
    if "local" in item:
        return [(rel, _counted(ctx, loc, rel, inputs, None)) for rel in _local_paths(ctx, item["local"], loc)]
    if "component" in item:
        rel, name = _component_path(ctx, item["component"], loc)
        return [(rel, _counted(ctx, loc, rel, inputs, name))]
    if "project" in item:
        project = expand(str(item["project"]), ctx.variables)
        if project.strip("/") != ctx.project_path:
            raise PipelineError(
                f"include:project `{project}` is another project; kuberunner exec reads only this project's "
                "files (no network)",
                loc,
            )
        return [
            (rel, _counted(ctx, loc, rel, inputs, None))
            for file in _as_list(item.get("file"))
            for rel in _local_paths(ctx, file, loc)
        ]
    if "remote" in item:
        raise PipelineError(
            f"include:remote `{item['remote']}` cannot be fetched: kuberunner exec works "
            "without network; vendor the file and use include:local",
            loc,
        )
    if "template" in item:
        raise PipelineError(
            f"include:template `{item['template']}` is a GitLab-hosted template; kuberunner "
            "exec works without network: copy it into the project and use include:local",
            loc,
        )
    raise PipelineError("include entry needs one of local:, component:, project:, remote:, template:", loc)


def _counted(
    ctx: LoadContext, loc: Location, rel: str, inputs: Mapping[str, Any] | None, component: str | None
) -> LMap:
    ctx.included += 1
    if ctx.included > MAX_INCLUDES:
        raise PipelineError(f"more than {MAX_INCLUDES} included files", loc)
    return _load_file(ctx, rel, loc, inputs, component, False)


def _include_rules_match(ctx: LoadContext, rules: Any, loc: Location) -> bool:
    if not isinstance(rules, list):
        raise PipelineError("include:rules must be an array", loc)
    from kuberunner.pipeline.globs import exists_regex

    for rule in rules:
        if not isinstance(rule, dict):
            raise PipelineError("include:rules entries must be mappings (if:, exists:, when:)", loc)
        if "if" in rule:
            try:
                if not evaluate(str(rule["if"]), ctx.variables):
                    continue
            except ExpressionError as exc:
                raise PipelineError(f"include:rules:if `{rule['if']}`: {exc}", loc) from None
        if "exists" in rule:
            patterns = rule["exists"]
            if isinstance(patterns, dict):
                patterns = patterns.get("paths", [])
            files = list(project_files(ctx.project_dir))
            regexes = [exists_regex(expand(str(p), ctx.variables)) for p in _as_list(patterns) if p]
            if not any(r.match(f) for r in regexes for f in files):
                continue
        return bool(rule.get("when", "always") != "never")
    return False


def _local_paths(ctx: LoadContext, raw: Any, loc: Location) -> list[str]:
    if not isinstance(raw, str) or not raw:
        raise PipelineError("include:local must be a file path", loc)
    path = expand(raw, ctx.variables)
    if path.startswith("./"):
        raise PipelineError(
            f"`{path}` for include:local is invalid: GitLab does not support relative paths "
            "(they cannot start with `./`); write it from the project root",
            loc,
        )
    if "../" in path or path == "..":
        raise PipelineError(
            f"`{path}` for include:local is invalid: GitLab does not support directory traversal (`../`)", loc
        )
    rel = path.lstrip("/")
    if is_glob(rel):
        regex = include_regex(rel)
        matches = [f for f in project_files(ctx.project_dir) if regex.match(f) and f.endswith(_YAML_SUFFIXES)]
        if not matches:
            raise PipelineError(f"include:local `{path}` matches no file", loc)
        return matches
    if not rel.endswith(_YAML_SUFFIXES):
        raise PipelineError(f"included file `{path}` does not have a YAML extension (.yml or .yaml)", loc)
    if not (ctx.project_dir / rel).is_file():
        raise PipelineError(f"local include file `{rel}` cannot be found in {ctx.project_dir}", loc)
    return [rel]


_COMPONENT = re.compile(r"^(?P<fqdn>[^/]+)/(?P<path>.+)/(?P<name>[^/@]+)@(?P<version>.+)$")


def _component_path(ctx: LoadContext, raw: Any, loc: Location) -> tuple[str, str]:
    if not isinstance(raw, str):
        raise PipelineError("include:component must be a string like host/group/project/name@version", loc)
    address = expand(raw, ctx.variables)
    m = _COMPONENT.match(address)
    if m is None:
        raise PipelineError(
            f"include:component `{address}` is not of the form host/group/project/name@version", loc
        )
    if m.group("fqdn") != ctx.server_fqdn or m.group("path") != ctx.project_path:
        raise PipelineError(
            f"include:component `{address}` belongs to another project; kuberunner exec resolves only this "
            f"project's components ({ctx.server_fqdn}/{ctx.project_path}/NAME@VERSION from templates/)",
            loc,
        )
    name = m.group("name")
    for candidate in (f"templates/{name}.yml", f"templates/{name}/template.yml"):
        if (ctx.project_dir / candidate).is_file():
            return candidate, name
    raise PipelineError(
        f"component `{name}` not found: expected templates/{name}.yml or templates/{name}/template.yml", loc
    )
