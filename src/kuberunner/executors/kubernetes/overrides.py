"""What a job may override through ``KUBERNETES_*`` variables, and the ``pod_spec`` patches.

Both change the pod the runner would otherwise generate, and both follow
gitlab-runner's rules exactly, because a ``.gitlab-ci.yml`` written for it must
behave the same here:

* ``KUBERNETES_NAMESPACE_OVERWRITE`` / ``KUBERNETES_SERVICE_ACCOUNT_OVERWRITE``
  are accepted when the matching ``*_overwrite_allowed`` regular expression
  *finds* a match (Go's ``MatchString`` is unanchored, so is :func:`re.search`);
  ``KUBERNETES_BEARER_TOKEN`` when ``bearer_token_overwrite_allowed = true``.
  gitlab-runner silently keeps the configured value when overriding is not
  enabled at all; kuberunner fails the job instead, naming the key an
  administrator would set, because a job that asked for another namespace or
  identity and silently got the default fails later in a far more confusing way.
* ``KUBERNETES_POD_LABELS_*``, ``KUBERNETES_POD_ANNOTATIONS_*``,
  ``KUBERNETES_NODE_SELECTOR_*`` (``key=value``) and
  ``KUBERNETES_NODE_TOLERATIONS_*`` (``key[=value][:Effect]``): the regular
  expression is matched against the variable's *value*. Not enabled: ignored,
  as in gitlab-runner, with a notice for the job log.
* Resource variables (``KUBERNETES_CPU_REQUEST``, ``KUBERNETES_HELPER_MEMORY_LIMIT``,
  ``KUBERNETES_SERVICE_EPHEMERAL_STORAGE_LIMIT``, ...): honoured up to the
  matching ``*_overwrite_max_allowed``; above it the job fails; with no maximum
  configured the variable is ignored (gitlab-runner: "the variable is not used"),
  with a notice. A service's own ``variables`` may set ``KUBERNETES_SERVICE_*``
  for that service alone.
* ``[[runners.kubernetes.pod_spec]]``: applied to the generated PodSpec (not
  the whole Pod) in order; ``patch`` (or the file at ``patch_path``) is JSON or
  YAML; ``patch_type`` ``merge`` (RFC 7386), ``json`` (RFC 6902) or
  ``strategic`` (Kubernetes strategic merge, the default when unset).

The bearer token is a credential: it never appears in a message or a repr.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from kuberunner.config.schema import KubernetesConfig, PodSpecPatch
from kuberunner.executors.base import BuildError
from kuberunner.util.quantity import QuantityError, parse_quantity

__all__ = [
    "BEARER_TOKEN_VARIABLE",
    "NAMESPACE_VARIABLE",
    "NODE_SELECTOR_PREFIX",
    "NODE_TOLERATIONS_PREFIX",
    "POD_ANNOTATIONS_PREFIX",
    "POD_LABELS_PREFIX",
    "SERVICE_ACCOUNT_VARIABLE",
    "Overrides",
    "PatchError",
    "ResourceKind",
    "Resources",
    "apply_pod_spec_patches",
    "json_patch",
    "map_overrides",
    "merge_patch",
    "resolve_bearer_token",
    "resolve_namespace",
    "resolve_overrides",
    "resolve_resources",
    "resolve_service_account",
    "strategic_merge_patch",
    "variable_map",
]

NAMESPACE_VARIABLE = "KUBERNETES_NAMESPACE_OVERWRITE"
SERVICE_ACCOUNT_VARIABLE = "KUBERNETES_SERVICE_ACCOUNT_OVERWRITE"
BEARER_TOKEN_VARIABLE = "KUBERNETES_BEARER_TOKEN"
POD_LABELS_PREFIX = "KUBERNETES_POD_LABELS_"
POD_ANNOTATIONS_PREFIX = "KUBERNETES_POD_ANNOTATIONS_"
NODE_SELECTOR_PREFIX = "KUBERNETES_NODE_SELECTOR_"
NODE_TOLERATIONS_PREFIX = "KUBERNETES_NODE_TOLERATIONS_"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

Variables = Sequence[tuple[str, str]]


def variable_map(variables: Variables) -> dict[str, str]:
    """Key → value, the last definition winning (gitlab-runner's ``JobVariables.Get``)."""
    result: dict[str, str] = {}
    for key, value in variables:
        result[key] = value
    return result


def _config_error(message: str) -> BuildError:
    return BuildError(message, "runner_configuration_error")


def _compile(pattern: str, key: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise _config_error(
            f"[runners.kubernetes] {key} = {pattern!r} is not a valid regular expression: {exc}"
        ) from None


# ------------------------------------------------------------------ namespace, identity


@dataclass(frozen=True)
class Overrides:
    """Where and as whom the job's objects are created, after the job's overrides."""

    namespace: str
    service_account: str
    bearer_token: str = field(repr=False)


def _regex_overwrite(
    configured: str, variable: str, requested: str, pattern: str, key: str, what: str
) -> str:
    if not requested:
        return configured
    if not pattern:
        raise _config_error(
            f"the job sets {variable} = {requested!r}, but this runner does not allow overriding the "
            f"{what}: an administrator can allow it with {key} in [runners.kubernetes] (a regular "
            f"expression the value must match), or remove {variable} from the job"
        )
    if not _compile(pattern, key).search(requested):
        raise _config_error(
            f"{variable} = {requested!r} is not allowed: it does not match {key} = {pattern!r} "
            "in [runners.kubernetes]"
        )
    return requested


def resolve_namespace(cfg: KubernetesConfig, variables: Variables) -> str:
    """``namespace`` (``default`` when empty), or the job's ``KUBERNETES_NAMESPACE_OVERWRITE``."""
    requested = variable_map(variables).get(NAMESPACE_VARIABLE, "")
    namespace = _regex_overwrite(
        cfg.namespace,
        NAMESPACE_VARIABLE,
        requested,
        cfg.namespace_overwrite_allowed,
        "namespace_overwrite_allowed",
        "namespace",
    )
    namespace = namespace or "default"
    if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        source = NAMESPACE_VARIABLE if requested else "[runners.kubernetes] namespace"
        raise _config_error(
            f"{source}: {namespace!r} is not a valid namespace name (lower case letters, digits and '-', "
            "at most 63 characters, starting and ending with a letter or digit)"
        )
    return namespace


def resolve_service_account(cfg: KubernetesConfig, variables: Variables) -> str:
    """``service_account`` or the job's ``KUBERNETES_SERVICE_ACCOUNT_OVERWRITE``; "" = the default one."""
    requested = variable_map(variables).get(SERVICE_ACCOUNT_VARIABLE, "")
    return _regex_overwrite(
        cfg.service_account,
        SERVICE_ACCOUNT_VARIABLE,
        requested,
        cfg.service_account_overwrite_allowed,
        "service_account_overwrite_allowed",
        "service account",
    )


def resolve_bearer_token(cfg: KubernetesConfig, variables: Variables) -> str:
    """``bearer_token`` or the job's ``KUBERNETES_BEARER_TOKEN`` (never quoted in an error)."""
    requested = variable_map(variables).get(BEARER_TOKEN_VARIABLE, "")
    if not requested:
        return cfg.bearer_token
    if not cfg.bearer_token_overwrite_allowed:
        raise _config_error(
            f"the job sets {BEARER_TOKEN_VARIABLE}, but this runner does not accept a job's bearer token: "
            "an administrator can allow it with bearer_token_overwrite_allowed = true in "
            f"[runners.kubernetes], or remove {BEARER_TOKEN_VARIABLE} from the job"
        )
    return requested


def resolve_overrides(cfg: KubernetesConfig, variables: Variables) -> Overrides:
    """Namespace, service account and bearer token for one job; refused overrides raise BuildError."""
    return Overrides(
        namespace=resolve_namespace(cfg, variables),
        service_account=resolve_service_account(cfg, variables),
        bearer_token=resolve_bearer_token(cfg, variables),
    )


# ------------------------------------------------------------------------ map overrides


def _split_pair(variable: str, value: str) -> tuple[str, str]:
    key, sep, rest = value.partition("=")
    if not sep:
        raise _config_error(f"{variable} = {value!r} must have the form key=value")
    return key, rest


def _split_toleration(variable: str, value: str) -> tuple[str, str]:
    keyvalue, _, effect = value.partition(":")
    return keyvalue, effect


_SPLIT: dict[str, Callable[[str, str], tuple[str, str]]] = {
    NODE_TOLERATIONS_PREFIX: _split_toleration,
}


def map_overrides(
    configured: Mapping[str, str],
    variables: Variables,
    prefix: str,
    pattern: str,
    key: str,
    notices: list[str],
) -> dict[str, str]:
    """A config table (``pod_labels``, ``node_selector``, ...) with the job's ``<prefix>*`` entries applied.

    Each variable's *value* (``key=value``, or ``key[=value][:Effect]`` for
    tolerations) must match ``pattern``; a mismatch fails the job, as in
    gitlab-runner. With no pattern configured the variables are ignored and a
    notice says so.
    """
    result = dict(configured)
    requested = [(name, value) for name, value in variable_map(variables).items() if name.startswith(prefix)]
    if not requested:
        return result
    if not pattern:
        names = ", ".join(name for name, _ in requested)
        notices.append(
            f"{names} ignored: this runner does not allow jobs to override it "
            f"(an administrator can set {key} in [runners.kubernetes])"
        )
        return result
    regex = _compile(pattern, key)
    split = _SPLIT.get(prefix, _split_pair)
    for name, value in requested:
        if not regex.search(value):
            raise _config_error(
                f"{name} = {value!r} is not allowed: it does not match {key} = {pattern!r} "
                "in [runners.kubernetes]"
            )
        entry_key, entry_value = split(name, value)
        result[entry_key] = entry_value
    return result


# ---------------------------------------------------------------------------- resources

ResourceKind = Literal["build", "helper", "service"]

# (config attribute part, API name, variable part)
_RESOURCES = (
    ("cpu", "cpu", "CPU"),
    ("memory", "memory", "MEMORY"),
    ("ephemeral_storage", "ephemeral-storage", "EPHEMERAL_STORAGE"),
)
_KIND_PREFIX: dict[str, tuple[str, str]] = {
    "build": ("", "KUBERNETES_"),
    "helper": ("helper_", "KUBERNETES_HELPER_"),
    "service": ("service_", "KUBERNETES_SERVICE_"),
}


@dataclass(frozen=True)
class Resources:
    """A container's ``resources`` (quantities as written; validated and request <= limit)."""

    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.requests:
            out["requests"] = dict(self.requests)
        if self.limits:
            out["limits"] = dict(self.limits)
        return out


def _quantity(text: str, source: str) -> Fraction:
    try:
        return parse_quantity(text)
    except QuantityError as exc:
        raise _config_error(f"{source}: {exc}") from None


def resolve_resources(
    cfg: KubernetesConfig,
    kind: ResourceKind,
    variables: Variables,
    notices: list[str],
    *,
    service_variables: Variables = (),
    service_name: str = "",
) -> Resources:
    """Requests and limits of one kind of container, with the job's overrides applied.

    ``service_variables``/``service_name``: a service's own ``variables`` may set
    ``KUBERNETES_SERVICE_*`` for that service alone, on top of the job-wide ones.
    """
    cfg_prefix, var_prefix = _KIND_PREFIX[kind]
    job_values = variable_map(variables)
    service_values = variable_map(service_variables)
    chosen: dict[str, dict[str, tuple[str, str]]] = {"request": {}, "limit": {}}
    for which in ("request", "limit"):
        for attr, api_name, var_part in _RESOURCES:
            key = f"{cfg_prefix}{attr}_{which}"
            max_key = f"{key}_overwrite_max_allowed"
            value: str = getattr(cfg, key)
            maximum: str = getattr(cfg, max_key)
            source = f"[runners.kubernetes] {key}"
            if value:
                _quantity(value, source)
            variable = f"{var_prefix}{var_part}_{which.upper()}"
            candidates = [(job_values.get(variable, ""), variable)]
            if service_name:
                candidates.append(
                    (service_values.get(variable, ""), f"{variable} of service {service_name!r}")
                )
            for requested, origin in candidates:
                if not requested:
                    continue
                if not maximum:
                    notices.append(
                        f"{origin} = {requested!r} ignored: this runner does not allow jobs to change it "
                        f"(an administrator can set {max_key} in [runners.kubernetes])"
                    )
                    continue
                limit = _quantity(maximum, f"[runners.kubernetes] {max_key}")
                if _quantity(requested, origin) > limit:
                    raise _config_error(
                        f"{origin} = {requested!r} is more than this runner allows "
                        f"({max_key} = {maximum!r} in [runners.kubernetes])"
                    )
                value, source = requested, origin
            if value:
                chosen[which][api_name] = (value, source)
    for api_name, (request, request_source) in chosen["request"].items():
        if api_name in chosen["limit"]:
            limit_value, limit_source = chosen["limit"][api_name]
            if parse_quantity(request) > parse_quantity(limit_value):
                label = f"service {service_name!r}" if service_name else f"the {kind} container"
                raise _config_error(
                    f"{label}: the {api_name} request {request!r} ({request_source}) is more than its limit "
                    f"{limit_value!r} ({limit_source}); Kubernetes refuses such a pod"
                )
    return Resources(
        requests={name: v for name, (v, _) in chosen["request"].items()},
        limits={name: v for name, (v, _) in chosen["limit"].items()},
    )


# ------------------------------------------------------------------------------ patches


class PatchError(ValueError):
    """A patch that cannot be applied; the message says where and why."""


def _yaml_load(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: Any, label: str) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"{label}: {path!r} is not a JSON pointer (it must be empty or start with '/')")
    if not path:
        return []
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _index(container: list[Any], token: str, label: str, *, allow_end: bool) -> int:
    if allow_end and token == "-":
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise PatchError(f"{label}: {token!r} is not an array index")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise PatchError(f"{label}: index {index} is out of range (the array has {len(container)} items)")
    return index


def _resolve(doc: Any, tokens: list[str], label: str) -> Any:
    node = doc
    for depth, token in enumerate(tokens):
        where = "/" + "/".join(tokens[: depth + 1])
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"{label}: {where} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, label, allow_end=False)]
        else:
            raise PatchError(f"{label}: {where} does not exist (its parent is not an object or array)")
    return node


def _add(doc: Any, tokens: list[str], value: Any, label: str) -> Any:
    if not tokens:
        return copy.deepcopy(value)
    parent = _resolve(doc, tokens[:-1], label)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, label, allow_end=True), copy.deepcopy(value))
    else:
        raise PatchError(f"{label}: the parent of /{'/'.join(tokens)} is not an object or array")
    return doc


def _remove(doc: Any, tokens: list[str], label: str) -> Any:
    if not tokens:
        raise PatchError(f"{label}: the whole document cannot be removed")
    parent = _resolve(doc, tokens[:-1], label)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"{label}: /{'/'.join(tokens)} does not exist")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, label, allow_end=False)]
    else:
        raise PatchError(f"{label}: /{'/'.join(tokens)} does not exist")
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: unlike Python's ``==``, ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a is None and b is None


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test), applied to a copy of ``doc``."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations such as {op: add, path: /x, value: 1}")
    doc = copy.deepcopy(doc)
    for number, operation in enumerate(operations, 1):
        label = f"operation {number}"
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"{label}: each operation needs 'op' and 'path'")
        op = operation["op"]
        tokens = _pointer(operation["path"], label)
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"{label}: '{op}' needs a 'value'")
        if op in ("move", "copy") and "from" not in operation:
            raise PatchError(f"{label}: '{op}' needs a 'from'")
        if op == "add":
            doc = _add(doc, tokens, operation["value"], label)
        elif op == "remove":
            doc = _remove(doc, tokens, label)
        elif op == "replace":
            _resolve(doc, tokens, label)
            if tokens:
                doc = _add(_remove(doc, tokens, label), tokens, operation["value"], label)
            else:
                doc = copy.deepcopy(operation["value"])
        elif op in ("move", "copy"):
            source = _pointer(operation["from"], label)
            value = copy.deepcopy(_resolve(doc, source, label))
            if op == "move":
                if tokens[: len(source)] == source and len(tokens) > len(source):
                    raise PatchError(f"{label}: cannot move {operation['from']} into its own child")
                doc = _remove(doc, source, label)
            doc = _add(doc, tokens, value, label)
        elif op == "test":
            if not _json_equal(_resolve(doc, tokens, label), operation["value"]):
                raise PatchError(f"{label}: test failed: {operation['path']} is not {operation['value']!r}")
        else:
            raise PatchError(f"{label}: unknown op {op!r} (add, remove, replace, move, copy, test)")
    return doc


# Strategic merge: which PodSpec lists merge by which key (the patchMergeKey
# tags of k8s.io/api/core/v1); every other list is replaced whole.
_Table = Mapping[str, tuple[str, "Mapping[str, Any]"]]
_CONTAINER_LISTS: _Table = {
    "env": ("name", {}),
    "volumeMounts": ("mountPath", {}),
    "ports": ("containerPort", {}),
    "volumeDevices": ("devicePath", {}),
}
_POD_SPEC_LISTS: _Table = {
    "containers": ("name", _CONTAINER_LISTS),
    "initContainers": ("name", _CONTAINER_LISTS),
    "ephemeralContainers": ("name", _CONTAINER_LISTS),
    "volumes": ("name", {}),
    "imagePullSecrets": ("name", {}),
    "hostAliases": ("ip", {}),
    "topologySpreadConstraints": ("topologyKey", {}),
    "schedulingGates": ("name", {}),
    "resourceClaims": ("name", {}),
}
_DELETE = object()


def _smp_map(original: Mapping[str, Any], patch: Mapping[str, Any], table: _Table, where: str) -> Any:
    directive = patch.get("$patch")
    if directive == "replace":
        return _smp_map({}, {k: v for k, v in patch.items() if k != "$patch"}, table, where)
    if directive == "delete":
        return _DELETE
    if directive not in (None, "merge"):
        raise PatchError(f"{where}: unknown $patch directive {directive!r} (merge, replace, delete)")
    result = {k: copy.deepcopy(v) for k, v in original.items()}
    for key, value in patch.items():
        if key == "$patch" or key.startswith("$setElementOrder/"):
            continue  # the order hint only matters to the API server's own bookkeeping
        if key.startswith("$"):
            raise PatchError(f"{where}: the directive {key!r} is not supported (use $patch: replace/delete)")
        path = f"{where}.{key}" if where else key
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in table:
            merge_key, item_table = table[key]
            current = result.get(key)
            result[key] = _smp_list(
                current if isinstance(current, list) else [], value, merge_key, item_table, path
            )
        elif isinstance(value, list):
            result[key] = [_strip(item, path) for item in value]
        elif isinstance(value, dict):
            current = result.get(key)
            merged = _smp_map(current if isinstance(current, dict) else {}, value, {}, path)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result


def _strip(value: Any, where: str) -> Any:
    """A new value from a patch, with its directives applied to nothing."""
    if isinstance(value, dict):
        merged = _smp_map({}, value, {}, where)
        return {} if merged is _DELETE else merged
    return copy.deepcopy(value)


def _smp_list(original: list[Any], patch: list[Any], merge_key: str, table: _Table, where: str) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" and len(item) == 1 for item in patch):
        return [
            _smp_map({}, item, table, where)
            for item in patch
            if not (isinstance(item, dict) and item.get("$patch") == "replace" and len(item) == 1)
        ]
    result = [copy.deepcopy(item) for item in original]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchError(f"{where}: every item must have its {merge_key!r} (the key this list merges by)")
        key = item[merge_key]
        label = f"{where}[{merge_key}={key}]"
        position = next(
            (i for i, x in enumerate(result) if isinstance(x, dict) and x.get(merge_key) == key),
            None,
        )
        if item.get("$patch") == "delete":
            if position is not None:
                del result[position]
            continue
        if position is None:
            merged = _smp_map({}, item, table, label)
            if merged is not _DELETE:
                result.append(merged)
        else:
            merged = _smp_map(result[position], item, table, label)
            if merged is _DELETE:
                del result[position]
            else:
                result[position] = merged
    return result


def strategic_merge_patch(spec: Mapping[str, Any], patch: Any) -> dict[str, Any]:
    """Kubernetes strategic merge of a PodSpec: containers, volumes, env, ... merge by their key.

    Supported directives: ``$patch: replace`` / ``$patch: delete`` on maps and
    list items, a ``{$patch: replace}`` item replacing a whole list, and
    ``$setElementOrder/...`` (accepted, ignored). Anything else starting with
    ``$`` is refused rather than silently misapplied.
    """
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch is an object (a partial PodSpec)")
    merged = _smp_map(spec, patch, _POD_SPEC_LISTS, "")
    if merged is _DELETE:
        raise PatchError("$patch: delete at the top would remove the whole PodSpec")
    result: dict[str, Any] = merged
    return result


def apply_pod_spec_patches(
    spec: dict[str, Any],
    patches: Sequence[PodSpecPatch],
    read_file: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """``spec`` with every ``[[runners.kubernetes.pod_spec]]`` entry applied in order.

    ``read_file`` reads ``patch_path`` files (kept out of this module so it stays pure).
    """
    result: dict[str, Any] = copy.deepcopy(spec)
    for number, entry in enumerate(patches, 1):
        label = "[[runners.kubernetes.pod_spec]] " + (repr(entry.name) if entry.name else f"#{number}")
        if entry.patch and entry.patch_path:
            raise _config_error(f"{label}: set either patch or patch_path, not both")
        if entry.patch_path:
            if read_file is None:
                raise BuildError(f"{label}: patch_path {entry.patch_path!r} cannot be read here")
            try:
                text = read_file(entry.patch_path)
            except OSError as exc:
                raise _config_error(
                    f"{label}: cannot read patch_path {entry.patch_path!r}: {exc.strerror or exc}"
                ) from None
        elif entry.patch:
            text = entry.patch
        else:
            raise _config_error(f"{label}: set patch (JSON or YAML) or patch_path")
        try:
            data = _yaml_load(text)
        except YAMLError as exc:
            raise _config_error(f"{label}: the patch is neither JSON nor YAML: {exc}") from None
        patch_type = entry.patch_type or "strategic"
        try:
            if patch_type == "merge":
                if not isinstance(data, dict):
                    raise PatchError("a merge patch is an object (a partial PodSpec)")
                patched = merge_patch(result, data)
            elif patch_type == "json":
                patched = json_patch(result, data)
            else:
                patched = strategic_merge_patch(result, data)
        except PatchError as exc:
            raise _config_error(f"{label} ({patch_type} patch) cannot be applied: {exc}") from None
        if not isinstance(patched, dict):
            raise _config_error(f"{label} ({patch_type} patch): the result is not a PodSpec object")
        result = patched
    return result
