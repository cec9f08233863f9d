"""Request handling of the fake kube-apiserver: authn, authz, routing, admission, CRUD, watch, pods/log."""

from __future__ import annotations

import base64
import binascii
import json
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import yaml

from . import errors, psa, resources, schema
from ._util import (
    JSON,
    TimeParseError,
    deepcopy,
    dumps,
    go_char,
    new_uid,
    now_ns,
    parse_rfc3339,
    random_suffix,
    rfc3339,
)
from .auth import ANONYMOUS, UserInfo
from .defaults import (
    admit_pod,
    default_pod,
    fields_v1,
    managed_entry,
    manager_from_user_agent,
    order_object,
    order_pod,
)
from .errors import ApiError, status_body
from .faults import StreamControl
from .logs import CUT, Cut, LogOptions
from .logs import read as read_log
from .patch import apply_patch, json_patch, merge_patch, strategic_merge
from .rbac import Attributes
from .resources import (
    CLUSTERROLEBINDINGS,
    CLUSTERROLES,
    CONFIGMAPS,
    NAMESPACES,
    PODS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SELFSUBJECTREVIEWS,
    SERVICEACCOUNTS,
    SSAR,
    SSRR,
    ResourceType,
)
from .selectors import match_fields, match_labels, parse_field_selector, parse_label_selector
from .store import Closed, TooOld
from .validation import (
    decode_secret_data,
    validate_configmap,
    validate_metadata,
    validate_pod,
    validate_rbac,
    validate_secret,
)

if TYPE_CHECKING:
    from .double import KubeDouble

VERSION_INFO: JSON = {
    "major": "1",
    "minor": "36",
    "emulationMajor": "1",
    "emulationMinor": "36",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "35",
    "gitVersion": "v1.36.2",
    "gitCommit": "98b35193b2ac7a23a673325f5e9b830ecd5ba406",
    "gitTreeState": "clean",
    "buildDate": "2026-11-29T15:28:42Z",
    "goVersion": "go1.27.3-X:nojsonv2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
STREAM_CHUNK = bytes | Cut | None


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    cert_subject: Any = None
    cert_fingerprint: str = ""
    path: str = ""
    query: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        raw_path, _, raw_query = self.target.partition("?")
        self.path = raw_path or "/"
        self.query = {}
        for pair in raw_query.split("&") if raw_query else []:
            key, _, value = pair.partition("=")
            self.query.setdefault(unquote(key.replace("+", " ")), []).append(unquote(value.replace("+", " ")))

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("true", "1")


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: Iterator[STREAM_CHUNK] | None = None


@dataclass
class RequestInfo:
    resource_request: bool
    verb: str
    path: str
    group: str = ""
    version: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    rt: ResourceType | None = None


@dataclass
class RequestRecord:
    """One entry of `api.requests` (never holds credentials or bodies)."""

    method: str
    path: str
    user: str
    verb: str
    status: int = 0
    duration_ms: float = 0.0


_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_TYPE_META = (
    '{ APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }'
)
_POD_UPDATE_RULE = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def parse_info(req: Request) -> RequestInfo:
    parts = [unquote(p) for p in req.path.strip("/").split("/")] if req.path.strip("/") else []
    method_verb = {
        "GET": "get",
        "HEAD": "get",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }
    non_resource = RequestInfo(False, req.method.lower(), req.path)
    if parts[:1] == ["api"]:
        if len(parts) < 3:
            return non_resource
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"]:
        if len(parts) < 4:
            return non_resource
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return non_resource
    watch_prefix = False
    if rest[0] == "watch":
        watch_prefix = True
        rest = rest[1:]
        if not rest:
            return non_resource
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    verb = method_verb.get(req.method, req.method.lower())
    if verb == "get" and not name:
        verb = "list"
    if verb == "delete" and not name:
        verb = "deletecollection"
    if (verb in ("list", "get") and (req.flag("watch") or watch_prefix)) and not sub:
        verb = "watch"
    info = RequestInfo(True, verb, req.path, group, version, resource, namespace, name, sub)
    info.rt = resources.lookup(group, version, resource)
    if info.rt is not None and not info.rt.namespaced and resource != "namespaces":
        info.namespace = ""
    return info


def _ok(body: JSON, status: int = 200, warnings: list[str] | None = None) -> Response:
    return Response(status, dumps(body), headers=[("Warning", w) for w in warnings or []])


class ApiServer:
    """Turns a Request into a Response; holds no state of its own besides the request log."""

    def __init__(self, cluster: KubeDouble) -> None:
        self.c = cluster
        self.store = cluster.store

    # ================================================================ entry point
    def handle(self, req: Request) -> Response:
        start = time.monotonic()
        record = RequestRecord(req.method, req.target, "", "")
        try:
            response = self._handle(req, record)
        except ApiError as exc:
            response = Response(exc.code, dumps(exc.body()), headers=list(exc.headers.items()))
        except Exception as exc:  # never leak a traceback to the client; make the bug visible in tests
            self.c.record_error("api: " + traceback.format_exc())
            traceback.print_exc(file=sys.stderr)
            err = errors.internal_error(type(exc).__name__)
            response = Response(500, dumps(err.body()))
        record.status = response.status
        record.duration_ms = (time.monotonic() - start) * 1000
        self.c.log_request(record)
        return response

    def _handle(self, req: Request, record: RequestRecord) -> Response:
        injected = self.c.faults.take_http_failure(req.method, req.target)
        if injected is not None:
            raise injected
        user = self._authenticate(req)
        record.user = user.username
        info = parse_info(req)
        record.verb = info.verb
        self._authorize(user, info)
        if not info.resource_request:
            return self._non_resource(req, info)
        if info.rt is None:
            raise errors.page_not_found()
        return self._resource(req, info, user)

    # ================================================================ authn / authz
    def _authenticate(self, req: Request) -> UserInfo:
        header = req.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise errors.unauthorized()
            user = self.c.authenticator.authenticate_token(token.strip())
            if user is None:
                raise errors.unauthorized()
            return user
        if req.cert_subject:
            return self.c.authenticator.from_certificate(req.cert_subject, req.cert_fingerprint)
        return ANONYMOUS

    def _authorize(self, user: UserInfo, info: RequestInfo) -> None:
        attrs = Attributes(
            verb=info.verb,
            resource_request=info.resource_request,
            group=info.group,
            resource=info.resource,
            subresource=info.subresource,
            name=info.name,
            namespace=info.namespace,
            path=info.path,
        )
        allowed, _ = self.c.authorizer.authorize(user, attrs)
        if allowed:
            return
        if not info.resource_request:
            raise errors.forbidden_path(user.username, info.verb, info.path)
        raise errors.forbidden_by_rbac(
            user.username,
            info.verb,
            info.resource,
            info.subresource,
            info.group,
            info.namespace,
            info.name or None,
        )

    # ================================================================ non-resource paths
    def _non_resource(self, req: Request, info: RequestInfo) -> Response:
        path = req.path.rstrip("/") or "/"
        if path == "/version":
            return _ok(VERSION_INFO)
        if path in ("/healthz", "/readyz", "/livez"):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if path == "/api":
            return _ok(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.c.node.ip}:{self.c.port}"}
                    ],
                }
            )
        if path == "/api/v1":
            return _ok(resources.resource_list("v1"))
        if path == "/apis":
            return _ok(resources.group_list())
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2:
            group = resources.group(parts[1])
            if group is not None:
                return _ok(group)
        if parts[0] == "apis" and len(parts) == 3 and f"{parts[1]}/{parts[2]}" in resources.GROUP_VERSIONS:
            return _ok(resources.resource_list(f"{parts[1]}/{parts[2]}"))
        return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")

    # ================================================================ resources
    def _resource(self, req: Request, info: RequestInfo, user: UserInfo) -> Response:
        rt = info.rt
        assert rt is not None
        if rt in (SSAR, SSRR, SELFSUBJECTREVIEWS):
            if info.verb != "create":
                raise errors.method_not_supported(rt.name, rt.group, info.verb)
            return self._review(req, rt, user)
        if rt is PODS and info.subresource:
            return self._pod_subresource(req, info, user)
        if rt is SERVICEACCOUNTS and info.subresource == "token":
            return self._token_request(req, info)
        if info.subresource and info.subresource != "status":
            raise errors.page_not_found()
        if info.verb == "watch":
            return self._watch(req, info)
        if info.verb == "list":
            return self._list(req, info)
        if info.verb == "get":
            return _ok(self._get(info))
        if info.verb == "create":
            if info.name:
                raise errors.method_not_supported(rt.name, rt.group, "create")
            if rt is PODS:
                return self._create_pod(req, info, user)
            return self._create(req, info, user)
        if info.verb == "update":
            return self._update(req, info, user)
        if info.verb == "patch":
            return self._patch(req, info, user)
        if info.verb == "delete":
            return self._delete(req, info)
        if info.verb == "deletecollection":
            return self._delete_collection(req, info)
        raise errors.method_not_supported(rt.name, rt.group, info.verb)

    def _get(self, info: RequestInfo) -> JSON:
        rt = info.rt
        assert rt is not None
        obj = self.store.get(rt.key, info.namespace if rt.namespaced else "", info.name)
        if obj is None:
            raise errors.not_found(rt.name, info.name, rt.group)
        return obj

    # ---------------------------------------------------------------- decoding
    def _decode(self, req: Request, rt: ResourceType, *, model: str | None = None) -> tuple[JSON, list[str]]:
        try:
            raw = schema.decode(req.body)
        except schema.JsonSyntaxError as exc:
            preview = req.body.decode(errors="replace")[:1024]
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind}): couldn't get "
                "version/kind; "
                f"json parse error: {exc} ({preview})"
            ) from None
        if not isinstance(raw, dict):
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind}): couldn't get "
                "version/kind; "
                f"json parse error: json: cannot unmarshal {type(raw).__name__} into Go value of type struct "
                + _TYPE_META
            )
        kind = raw.get("kind")
        if kind and kind != rt.kind and model is None:
            raise errors.bad_request(
                f'{kind} in version "{rt.version}" cannot be handled as a {rt.kind}: converting '
                f"(v1.{kind}) to "
                f"(v1.{rt.kind}): unknown conversion"
            )
        mode = req.param("fieldValidation") or "Warn"
        if mode not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(
                f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", "Strict", "Warn"'
            )
        report = schema.check_fields(raw, model or rt.model)
        prefix = f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}'
        if report.type_error:
            raise errors.bad_request(f"{prefix}: {report.type_error}")
        warnings: list[str] = []
        if report.problems:
            if mode == "Strict":
                raise errors.bad_request(f"{prefix}: strict decoding error: {', '.join(report.problems)}")
            if mode == "Warn":
                warnings = [schema.warning_header(p) for p in report.problems]
        obj = schema.to_plain(raw)
        schema.drop_unknown(obj, report.unknown)
        if model is None:
            obj["kind"] = rt.kind
            obj["apiVersion"] = rt.api_version
        return obj, warnings

    def _dry_run(self, req: Request) -> bool:
        values = req.query.get("dryRun") or []
        for value in values:
            if value != "All":
                raise errors.bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
        return bool(values)

    def _manager(self, req: Request) -> str:
        return req.param("fieldManager") or manager_from_user_agent(req.headers.get("user-agent", ""))

    def _prepare_meta(self, obj: JSON, rt: ResourceType, info: RequestInfo) -> JSON:
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
            obj["metadata"] = meta
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != info.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = info.namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = str(meta["generateName"]) + random_suffix()
        for key in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
        ):
            meta.pop(key, None)
        return meta

    def _check_namespace(self, rt: ResourceType, info: RequestInfo, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.peek(NAMESPACES.key, "", info.namespace)
        if ns is None:
            raise errors.not_found("namespaces", info.namespace)
        if ns["metadata"].get("deletionTimestamp"):
            err = errors.forbidden(
                rt.name,
                name or None,
                rt.group,
                f"unable to create new content in namespace {info.namespace} because it is being terminated",
            )
            assert err.details is not None
            err.details["causes"] = [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {info.namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            raise err

    def _finish_meta(
        self, obj: JSON, rt: ResourceType, req: Request, fields: JSON, operation: str = "Update"
    ) -> None:
        meta = obj["metadata"]
        now = rfc3339()
        meta["uid"] = new_uid()
        if rt in (PODS,) or rt.group == "policy":
            meta["generation"] = 1
        meta["creationTimestamp"] = now
        meta["managedFields"] = [managed_entry(self._manager(req), operation, rt.api_version, now, fields)]

    # ---------------------------------------------------------------- create
    def _validate(self, obj: JSON, rt: ResourceType) -> None:
        name = obj["metadata"].get("name", "")
        if rt is SECRETS:
            causes = validate_secret(obj)
        elif rt is CONFIGMAPS:
            causes = validate_configmap(obj)
        elif rt in (ROLES, CLUSTERROLES, ROLEBINDINGS, CLUSTERROLEBINDINGS):
            causes = validate_rbac(obj, rt.kind)
        elif rt is NAMESPACES:
            causes = validate_metadata(obj["metadata"], "label")
        elif rt is PODS:
            causes = validate_pod(obj)
        else:
            causes = validate_metadata(obj["metadata"], "subdomain")
        if causes:
            raise errors.invalid(rt.kind, name, causes, rt.group)

    def _normalize(self, obj: JSON, rt: ResourceType) -> None:
        """Type-specific defaulting (before validation)."""
        if rt is SECRETS:
            data = obj.get("data") or {}
            bad = decode_secret_data(data)
            if bad:
                raise errors.bad_request(f'Secret in version "v1" cannot be handled as a Secret: {bad}')
            for key, value in (obj.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            if data:
                obj["data"] = data
            obj.setdefault("type", "Opaque")
        elif rt is NAMESPACES:
            name = obj["metadata"].get("name", "")
            labels = obj["metadata"].setdefault("labels", {})
            if name:
                labels["kubernetes.io/metadata.name"] = name
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        elif rt in (ROLES, CLUSTERROLES):
            obj.setdefault("rules", [])
            obj["rules"] = [
                {
                    k: r[k]
                    for k in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")
                    if k in r
                }
                for r in obj["rules"] or []
            ]
        elif rt is SERVICEACCOUNTS:
            pass

    def _create(self, req: Request, info: RequestInfo, user: UserInfo) -> Response:
        rt = info.rt
        assert rt is not None
        obj, warnings = self._decode(req, rt)
        meta = self._prepare_meta(obj, rt, info)
        self._check_namespace(rt, info, meta.get("name", ""))
        self._normalize(obj, rt)
        fields = fields_v1(obj)
        self._validate(obj, rt)
        self._finish_meta(obj, rt, req, fields)
        obj = order_object(obj)
        if self._dry_run(req):
            if self.store.peek(rt.key, meta.get("namespace", ""), meta["name"]) is not None:
                raise errors.already_exists(rt.name, meta["name"], rt.group)
            return _ok(obj, 201, warnings)
        created = self.store.create(rt.key, obj)
        if created is None:
            raise errors.already_exists(rt.name, meta["name"], rt.group)
        if rt is NAMESPACES:
            self.c.populate_namespace(meta["name"])
        return _ok(created, 201, warnings)

    # ---------------------------------------------------------------- pods
    def _create_pod(self, req: Request, info: RequestInfo, user: UserInfo) -> Response:
        obj, warnings = self._decode(req, PODS)
        meta = self._prepare_meta(obj, PODS, info)
        name = meta.get("name", "")
        self._check_namespace(PODS, info, name)
        if not isinstance(obj.get("spec"), dict):
            obj["spec"] = {}
        default_pod(obj)
        fields = fields_v1(obj)
        spec = obj["spec"]
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        sa = self.store.peek(SERVICEACCOUNTS.key, info.namespace, sa_name)
        if sa is None:
            raise errors.forbidden(
                "pods",
                name or None,
                "",
                f"error looking up service account {info.namespace}/{sa_name}: serviceaccount "
                f'"{sa_name}" not found',
            )
        admit_pod(obj, sa.get("automountServiceAccountToken") is not False)
        causes = validate_pod(obj)
        if causes:
            raise errors.invalid("Pod", name, causes)
        ns_labels = (self.store.peek(NAMESPACES.key, "", info.namespace) or {}).get("metadata", {}).get(
            "labels"
        ) or {}
        enforce = psa.policy(ns_labels, "enforce")
        if enforce is not None:
            problems = psa.violations(enforce[0], obj)
            if problems:
                raise errors.forbidden("pods", name, "", psa.message(enforce[0], enforce[1], problems))
        warn = psa.policy(ns_labels, "warn")
        if warn is not None:
            problems = psa.violations(warn[0], obj)
            if problems:
                warnings.append(schema.warning_header(psa.message(warn[0], warn[1], problems, warn=True)))
        self._finish_meta(obj, PODS, req, fields)
        obj = order_pod(obj)
        if self._dry_run(req):
            if self.store.peek(PODS.key, info.namespace, name) is not None:
                raise errors.already_exists("pods", name)
            return _ok(obj, 201, warnings)
        created = self.store.create(PODS.key, obj)
        if created is None:
            raise errors.already_exists("pods", name)
        return _ok(created, 201, warnings)

    def _pod_subresource(self, req: Request, info: RequestInfo, user: UserInfo) -> Response:
        sub = info.subresource
        if sub == "log" and req.method == "GET":
            return self._pod_log(req, info)
        if sub == "eviction" and req.method == "POST":
            return self._eviction(req, info)
        if sub == "status":
            if req.method == "GET":
                return _ok(self._get(info))
            if req.method in ("PUT", "PATCH"):
                return self._update_status(req, info)
        if sub in ("exec", "attach", "portforward"):
            raise errors.bad_request("Upgrade request required")
        if sub == "binding" and req.method == "POST":
            return self._binding(req, info)
        raise errors.method_not_supported("pods", "", info.verb)

    def _binding(self, req: Request, info: RequestInfo) -> Response:
        body, _ = self._decode(req, PODS, model="V1Binding")
        target = (body.get("target") or {}).get("name", "")
        pod = self._get(info)
        if pod["spec"].get("nodeName"):
            raise errors.conflict(
                "pods",
                info.name,
                "",
                f'pod {info.name} is already assigned to node "{pod["spec"]["nodeName"]}"',
            )

        def bind(obj: JSON) -> None:
            obj["spec"]["nodeName"] = target

        self.store.mutate(PODS.key, info.namespace, info.name, bind)
        return _ok(status_body(201, None, None, None, success=True), 201)

    def _update_status(self, req: Request, info: RequestInfo) -> Response:
        current = self._get(info)
        if req.method == "PUT":
            new, _ = self._decode(req, PODS)
            status = new.get("status") or {}
        else:
            patched = self._apply_patch_body(req, current, PODS)
            status = patched.get("status") or {}

        def update(obj: JSON) -> None:
            obj["status"] = status

        result = self.store.mutate(PODS.key, info.namespace, info.name, update)
        assert result is not None
        return _ok(result)

    def delete_options(self, req: Request) -> JSON:
        opts: JSON = {}
        if req.body.strip():
            try:
                body = json.loads(req.body)
            except ValueError:
                raise errors.bad_request("the body of the request was in an unknown format") from None
            if isinstance(body, dict):
                opts.update(body)
        grace = req.param("gracePeriodSeconds")
        if grace is not None:
            try:
                opts["gracePeriodSeconds"] = int(grace)
            except ValueError:
                raise errors.bad_request(f'gracePeriodSeconds: Invalid value: "{grace}"') from None
        policy = req.param("propagationPolicy")
        if policy is not None:
            opts["propagationPolicy"] = policy
        if opts.get("propagationPolicy") not in (None, "Orphan", "Background", "Foreground"):
            raise errors.invalid(
                "DeleteOptions",
                "",
                [
                    errors.not_supported(
                        "propagationPolicy",
                        opts["propagationPolicy"],
                        ["Foreground", "Background", "Orphan", "nil"],
                    )
                ],
            )
        return opts

    def _check_preconditions(self, obj: JSON, opts: JSON, rt: ResourceType) -> None:
        pre = opts.get("preconditions") or {}
        meta = obj["metadata"]
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(
                rt.name,
                meta["name"],
                rt.group,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                f"{meta.get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise errors.conflict(
                rt.name,
                meta["name"],
                rt.group,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
            )

    def _delete_pod(self, req: Request, info: RequestInfo) -> Response:
        opts = self.delete_options(req)
        pod = self._get(info)
        self._check_preconditions(pod, opts, PODS)
        if self._dry_run(req):
            return _ok(pod)
        result = self.c.delete_pod_gracefully(info.namespace, info.name, opts.get("gracePeriodSeconds"))
        if result is None:
            raise errors.not_found("pods", info.name)
        return _ok(result)

    def _eviction(self, req: Request, info: RequestInfo) -> Response:
        body, _ = self._decode(req, PODS, model="V1Eviction")
        if body.get("kind") not in (None, "Eviction"):
            raise errors.bad_request("the body of the request was in an unknown format")
        self._get(info)
        grace = (body.get("deleteOptions") or {}).get("gracePeriodSeconds")
        if self._dry_run(req):
            return _ok(status_body(201, None, None, None, success=True), 201)
        self.c.evict_pod(info.namespace, info.name, grace)
        return _ok(status_body(201, None, None, None, success=True), 201)

    # ---------------------------------------------------------------- pods/log
    def _pod_log(self, req: Request, info: RequestInfo) -> Response:
        opts = self._log_options(req, info.name)
        pod = self._get(info)
        spec = pod["spec"]
        all_names = [c["name"] for c in spec.get("initContainers") or []] + [
            c["name"] for c in spec.get("containers") or []
        ]
        container = req.param("container")
        if not container:
            if len(spec.get("containers") or []) == 1:
                container = spec["containers"][0]["name"]
            else:
                raise errors.bad_request(
                    f"a container name must be specified for pod {info.name}, choose one of: "
                    f"[{' '.join(all_names)}]"
                )
        if container not in all_names:
            raise errors.bad_request(f"container {container} is not valid for pod {info.name}")
        if not spec.get("nodeName"):
            return Response(204, b"", None)
        uid = pod["metadata"]["uid"]
        previous = req.flag("previous")
        worker = self.c.kubelet.worker_by_uid(uid)
        view = worker.container_state(container) if worker is not None else None
        if view is None:
            view = self._status_view(pod, container)
        state, last_state = view
        prefix = f'container "{container}" in pod "{info.name}"'
        if previous:
            if not last_state.get("terminated"):
                raise errors.bad_request(
                    f'previous terminated container "{container}" in pod "{info.name}" not found'
                )
            log = self.c.logs.previous(uid, container)
        elif state.get("running") or state.get("terminated") or last_state.get("terminated"):
            log = self.c.logs.current(uid, container)
        else:
            reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
            if reason in ("ErrImagePull", "ImagePullBackOff"):
                raise errors.bad_request(f"{prefix} is waiting to start: image can't be pulled")
            raise errors.bad_request(f"{prefix} is waiting to start: {reason}")
        if log is None:
            if state.get("terminated"):
                return Response(200, b"", "text/plain")
            raise errors.bad_request(f"{prefix} is waiting to start: ContainerCreating")
        running = bool(state.get("running"))
        opts.follow = opts.follow and running and not previous
        ctl = StreamControl("log", pod=info.name, container=container, namespace=info.namespace)
        if not opts.follow:
            body = b"".join(c for c in read_log(log, opts, lambda: True) if isinstance(c, bytes))
            return Response(200, body, "text/plain")
        self.c.faults.register(ctl)

        def stream() -> Iterator[STREAM_CHUNK]:
            try:
                yield from read_log(
                    log, opts, lambda: self.store.closed or ctl.ended.is_set(), lambda: ctl.cut
                )
            finally:
                self.c.faults.unregister(ctl)

        return Response(200, content_type="text/plain", stream=stream())

    @staticmethod
    def _status_view(pod: JSON, container: str) -> tuple[JSON, JSON]:
        status = pod.get("status") or {}
        for entry in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            if entry.get("name") == container:
                return entry.get("state") or {}, entry.get("lastState") or {}
        has_init = bool(pod["spec"].get("initContainers"))
        return {"waiting": {"reason": "PodInitializing" if has_init else "ContainerCreating"}}, {}

    def _log_options(self, req: Request, name: str) -> LogOptions:
        opts = LogOptions(follow=req.flag("follow"), timestamps=req.flag("timestamps"))
        since_time = req.param("sinceTime")
        since_seconds = req.param("sinceSeconds")
        causes: list[errors.Cause] = []
        if since_time is not None and since_seconds is not None:
            causes.append(
                errors.forbidden_field("[]", "at most one of `sinceTime` or `sinceSeconds` may be specified")
            )
        parsed_since: int | None = None
        if since_time is not None:
            try:
                parsed_since = parse_rfc3339(since_time)
            except TimeParseError as exc:
                raise errors.bad_request(str(exc)) from None
        for key in ("tailLines", "limitBytes", "sinceSeconds"):
            raw = req.param(key)
            if raw is None:
                continue
            try:
                value = int(raw)
            except ValueError:
                raise errors.bad_request(f'strconv.ParseInt: parsing "{raw}": invalid syntax') from None
            if key == "tailLines":
                if value < 0:
                    causes.append(
                        errors.invalid_value("tailLines", value, "must be greater than or equal to 0")
                    )
                opts.tail_lines = value
            elif key == "limitBytes":
                if value < 1:
                    causes.append(errors.invalid_value("limitBytes", value, "must be greater than 0"))
                opts.limit_bytes = value
            else:
                if value < 1:
                    causes.append(errors.invalid_value("sinceSeconds", value, "must be greater than 0"))
                opts.since_ns = now_ns() - value * 1_000_000_000
        if causes:
            raise errors.invalid("PodLogOptions", name, causes)
        if parsed_since is not None:
            opts.since_ns = parsed_since - parsed_since % 1_000_000_000  # the kubelet gets whole seconds
        return opts

    # ---------------------------------------------------------------- tokens and reviews
    def _token_request(self, req: Request, info: RequestInfo) -> Response:
        if req.method != "POST":
            raise errors.method_not_supported("serviceaccounts", "", info.verb)
        body, _ = self._decode(req, SERVICEACCOUNTS, model="AuthenticationV1TokenRequest")
        sa = self.store.get(SERVICEACCOUNTS.key, info.namespace, info.name)
        if sa is None:
            raise errors.not_found("serviceaccounts", info.name)
        spec = body.get("spec") or {}
        expiration = int(spec.get("expirationSeconds") or 3600)
        if expiration < 600:
            raise errors.invalid(
                "TokenRequest",
                info.name,
                [
                    errors.invalid_value(
                        "spec.expirationSeconds",
                        expiration,
                        "may not specify a duration less than 10 minutes",
                    )
                ],
                "authentication.k8s.io",
            )
        audiences = list(spec.get("audiences") or [])
        token, expires = self.c.authenticator.issue_sa_token(
            info.namespace, info.name, sa["metadata"]["uid"], expiration, audiences
        )
        answer = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": info.name, "namespace": info.namespace, "creationTimestamp": None},
            "spec": {
                "audiences": audiences or ["https://kubernetes.default.svc.cluster.local"],
                "expirationSeconds": expiration,
                "boundObjectRef": spec.get("boundObjectRef"),
            },
            "status": {"token": token, "expirationTimestamp": rfc3339(int(expires) * 1_000_000_000)},
        }
        return _ok(answer, 201)

    def _review(self, req: Request, rt: ResourceType, user: UserInfo) -> Response:
        body, _ = self._decode(req, rt)
        now = rfc3339()
        if rt is SELFSUBJECTREVIEWS:
            info: JSON = {"username": user.username}
            if user.uid:
                info["uid"] = user.uid
            info["groups"] = list(user.groups)
            if user.extra:
                info["extra"] = {k: list(v) for k, v in user.extra.items()}
            return _ok(
                {
                    "kind": rt.kind,
                    "apiVersion": rt.api_version,
                    "metadata": {"creationTimestamp": now},
                    "status": {"userInfo": info},
                },
                201,
            )
        spec = body.get("spec") or {}
        if rt is SSRR:
            namespace = spec.get("namespace") or ""
            resource_rules, non_resource = self.c.authorizer.rules_for(user, namespace)
            return _ok(
                {
                    "kind": rt.kind,
                    "apiVersion": rt.api_version,
                    "metadata": {},
                    "spec": {},
                    "status": {
                        "resourceRules": resource_rules,
                        "nonResourceRules": non_resource,
                        "incomplete": False,
                    },
                },
                201,
            )
        resource_attrs = spec.get("resourceAttributes")
        non_resource_attrs = spec.get("nonResourceAttributes")
        if resource_attrs is None and non_resource_attrs is None:
            raise errors.invalid(
                rt.kind,
                "",
                [
                    errors.invalid_value(
                        "spec.resourceAttributes",
                        None,
                        "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    )
                ],
                rt.group,
            )
        if resource_attrs is not None:
            attrs = Attributes(
                verb=resource_attrs.get("verb", ""),
                resource_request=True,
                group=resource_attrs.get("group", ""),
                resource=resource_attrs.get("resource", ""),
                subresource=resource_attrs.get("subresource", ""),
                name=resource_attrs.get("name", ""),
                namespace=resource_attrs.get("namespace", ""),
            )
            echoed = {"resourceAttributes": {k: v for k, v in resource_attrs.items() if v not in ("", None)}}
        else:
            assert non_resource_attrs is not None
            attrs = Attributes(
                verb=non_resource_attrs.get("verb", ""),
                resource_request=False,
                path=non_resource_attrs.get("path", ""),
            )
            echoed = {"nonResourceAttributes": dict(non_resource_attrs)}
        allowed, reason = self.c.authorizer.authorize(user, attrs)
        status: JSON = {"allowed": allowed}
        if reason:
            status["reason"] = reason
        fields: JSON = {
            "f:spec": {f"f:{k}": {".": {}, **{f"f:{kk}": {} for kk in v}} for k, v in echoed.items()}
        }
        meta = {"managedFields": [managed_entry(self._manager(req), "Update", rt.api_version, now, fields)]}
        return _ok(
            {
                "kind": rt.kind,
                "apiVersion": rt.api_version,
                "metadata": meta,
                "spec": echoed,
                "status": status,
            },
            201,
        )

    # ---------------------------------------------------------------- list / watch
    def _selectors(self, req: Request, rt: ResourceType) -> tuple[list[Any], list[Any]]:
        return (
            parse_label_selector(req.param("labelSelector") or ""),
            parse_field_selector(req.param("fieldSelector") or "", rt.name),
        )

    @staticmethod
    def _bad_rv(value: str) -> ApiError:
        return ApiError(
            500,
            None,
            f'resourceVersion: Invalid value: "{value}": strconv.ParseUint: parsing "{value}": '
            "invalid syntax",
        )

    def _list(self, req: Request, info: RequestInfo) -> Response:
        rt = info.rt
        assert rt is not None
        labels, fields = self._selectors(req, rt)
        namespace = info.namespace if rt.namespaced and info.namespace else None
        rv_param = req.param("resourceVersion")
        match = req.param("resourceVersionMatch")
        if rv_param not in (None, "", "0") and not str(rv_param).isdigit():
            raise self._bad_rv(str(rv_param))
        with self.store.lock:
            current = self.store.current_rv
            if match == "Exact" and rv_param not in (None, "", "0"):
                try:
                    items = self.store.snapshot_at(rt.key, namespace, int(str(rv_param)))
                except TooOld:
                    raise ApiError(
                        410, "Expired", "The resourceVersion for the provided list is too old."
                    ) from None
                current = int(str(rv_param))
            else:
                items = self.store.list(rt.key, namespace)
        items = [o for o in items if match_labels(labels, o) and match_fields(fields, o)]
        start = 0
        token = req.param("continue")
        if token:
            start, current = self._decode_continue(token)
        limit = int(req.param("limit") or 0)
        meta: JSON = {"resourceVersion": str(current)}
        page = items[start:]
        if limit > 0 and len(page) > limit:
            page = page[:limit]
            meta["continue"] = (
                base64.urlsafe_b64encode(
                    json.dumps({"v": "meta.k8s.io/v1", "rv": current, "start": start + limit}).encode()
                )
                .decode()
                .rstrip("=")
            )
            meta["remainingItemCount"] = len(items) - start - limit
        for item in page:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return _ok({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta, "items": page})

    @staticmethod
    def _decode_continue(token: str) -> tuple[int, int]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise errors.bad_request("invalid continue token: illegal base64 data at input byte 0") from None
        text = raw.decode("latin-1")
        try:
            data = json.loads(text)
            return int(data["start"]), int(data["rv"])
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, json.JSONDecodeError) and exc.pos < len(text):
                detail = f"invalid character {go_char(text[exc.pos])} looking for beginning of value"
            else:
                detail = "unexpected end of JSON input"
            raise errors.bad_request(f"invalid continue token: continue key is not valid: {detail}") from None

    def _watch(self, req: Request, info: RequestInfo) -> Response:
        rt = info.rt
        assert rt is not None
        labels, fields = self._selectors(req, rt)
        if info.name:
            fields = [*fields, *parse_field_selector(f"metadata.name={info.name}", rt.name)]
        namespace = info.namespace if rt.namespaced and info.namespace else None
        rv_param = req.param("resourceVersion")
        if rv_param not in (None, "", "0") and not str(rv_param).isdigit():
            raise self._bad_rv(str(rv_param))
        timeout = float(req.param("timeoutSeconds") or 0) or self.c.timings.watch_timeout
        bookmarks = req.flag("allowWatchBookmarks")
        send_initial = req.flag("sendInitialEvents")

        def matches(obj: JSON | None) -> bool:
            return (
                obj is not None
                and (namespace is None or obj["metadata"].get("namespace") == namespace)
                and match_labels(labels, obj)
                and match_fields(fields, obj)
            )

        initial: list[JSON] = []
        error: str | None = None
        with self.store.lock:
            if rv_param in (None, "", "0") or send_initial:
                cursor = self.store.cursor(None)
                initial = [o for o in self.store.list(rt.key, namespace) if matches(o)]
            else:
                try:
                    cursor = self.store.cursor(int(str(rv_param)))
                except TooOld as exc:
                    error = str(exc)
                    cursor = self.store.cursor(None)
            current = self.store.current_rv
        ctl = StreamControl("watch", resource=rt.key, namespace=namespace)
        self.c.faults.register(ctl)

        def line(type_: str, obj: JSON) -> bytes:
            return dumps({"type": type_, "object": obj}) + b"\n"

        def bookmark(rv: int, initial_end: bool = False) -> bytes:
            meta: JSON = {"resourceVersion": str(rv), "creationTimestamp": None}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return line("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta})

        def expired(message: str) -> bytes:
            return line("ERROR", status_body(410, "Expired", message))

        def stream() -> Iterator[STREAM_CHUNK]:
            try:
                if error is not None:
                    yield expired(error)
                    return
                for obj in initial:
                    yield line("ADDED", obj)
                if send_initial and bookmarks:
                    yield bookmark(current, initial_end=True)
                deadline = time.monotonic() + timeout
                next_bookmark = time.monotonic() + self.c.timings.bookmark_interval
                last_rv = current
                while True:
                    if ctl.ended.is_set():
                        if ctl.abrupt:
                            yield CUT
                        return
                    now = time.monotonic()
                    if now >= deadline:
                        return
                    try:
                        changes = cursor.next(min(1.0, deadline - now))
                    except TooOld:
                        yield expired(f"too old resource version: {last_rv} ({self.store.oldest_rv})")
                        return
                    except Closed:
                        return
                    sent = False
                    for change in changes:
                        last_rv = change.rv
                        if change.resource != rt.key:
                            continue
                        now_match = matches(change.obj)
                        if change.type == "DELETED":
                            if matches(change.prev or change.obj):
                                sent = True
                                yield line("DELETED", change.obj)
                            continue
                        before = matches(change.prev)
                        if now_match and before:
                            sent = True
                            yield line("MODIFIED", change.obj)
                        elif now_match:
                            sent = True
                            yield line("ADDED", change.obj)
                        elif before:
                            sent = True
                            yield line("DELETED", change.obj)
                    if bookmarks and time.monotonic() >= next_bookmark:
                        next_bookmark = time.monotonic() + self.c.timings.bookmark_interval
                        sent = True
                        yield bookmark(self.store.current_rv)
                    if not sent:
                        yield None
            finally:
                self.c.faults.unregister(ctl)

        return Response(200, stream=stream())

    # ---------------------------------------------------------------- update / patch / delete
    def _check_update(self, rt: ResourceType, current: JSON, new: JSON) -> None:
        if rt is PODS:
            allowed = deepcopy(current["spec"])
            proposed = deepcopy(new.get("spec") or {})
            for key in ("activeDeadlineSeconds", "tolerations"):
                allowed.pop(key, None)
                proposed.pop(key, None)
            for section in ("containers", "initContainers"):
                for c in [*allowed.get(section, []), *proposed.get(section, [])]:
                    c.pop("image", None)
            if allowed != proposed:
                raise errors.invalid(
                    "Pod",
                    current["metadata"]["name"],
                    [
                        errors.forbidden_field(
                            "spec",
                            _POD_UPDATE_RULE,
                        )
                    ],
                )
        if rt in (SECRETS, CONFIGMAPS) and current.get("immutable"):
            for key in ("data", "binaryData"):
                if current.get(key) != new.get(key):
                    raise errors.invalid(
                        rt.kind,
                        current["metadata"]["name"],
                        [errors.forbidden_field(key, "field is immutable when `immutable` is set")],
                    )

    def _store_update(self, req: Request, rt: ResourceType, current: JSON, new: JSON, operation: str) -> JSON:
        meta = new.setdefault("metadata", {})
        cur_meta = current["metadata"]
        for key in (
            "uid",
            "creationTimestamp",
            "namespace",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if key in cur_meta:
                meta[key] = cur_meta[key]
            else:
                meta.pop(key, None)
        meta["name"] = cur_meta["name"]
        if "generation" in cur_meta:
            meta["generation"] = cur_meta["generation"] + (1 if new.get("spec") != current.get("spec") else 0)
        if rt is PODS or rt is NAMESPACES:
            new["status"] = current.get("status")
        new["kind"] = rt.kind
        new["apiVersion"] = rt.api_version
        self._normalize_update(new, rt)
        self._check_update(rt, current, new)
        self._validate(new, rt)
        entries = [
            m
            for m in cur_meta.get("managedFields") or []
            if m.get("manager") != self._manager(req) or m.get("operation") != operation
        ]
        entries.append(
            managed_entry(self._manager(req), operation, rt.api_version, rfc3339(), fields_v1(new))
        )
        meta["managedFields"] = entries
        new = order_pod(new) if rt is PODS else order_object(new)
        if self._dry_run(req):
            return new
        expected_rv = cur_meta.get("resourceVersion")

        def replace(obj: JSON) -> bool:
            if obj["metadata"].get("resourceVersion") != expected_rv:
                raise errors.conflict(rt.name, cur_meta["name"], rt.group)
            obj.clear()
            obj.update(deepcopy(new))
            return True

        with self.store.lock:
            result = self.store.mutate(rt.key, cur_meta.get("namespace", ""), cur_meta["name"], replace)
        if result is None:
            raise errors.not_found(rt.name, cur_meta["name"], rt.group)
        return result

    def _normalize_update(self, obj: JSON, rt: ResourceType) -> None:
        if rt is SECRETS:
            data = obj.get("data") or {}
            bad = decode_secret_data(data)
            if bad:
                raise errors.bad_request(f'Secret in version "v1" cannot be handled as a Secret: {bad}')
            for key, value in (obj.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            if data:
                obj["data"] = data
            obj.setdefault("type", "Opaque")
        elif rt is PODS:
            default_pod(obj)

    def _update(self, req: Request, info: RequestInfo, user: UserInfo) -> Response:
        rt = info.rt
        assert rt is not None
        new, warnings = self._decode(req, rt)
        meta = new.get("metadata") or {}
        if meta.get("name") and meta["name"] != info.name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({info.name})"
            )
        current = self._get(info)
        if meta.get("resourceVersion") and meta["resourceVersion"] != current["metadata"].get(
            "resourceVersion"
        ):
            raise errors.conflict(rt.name, info.name, rt.group)
        new["metadata"] = dict(meta)
        return _ok(self._store_update(req, rt, current, new, "Update"), 200, warnings)

    def _apply_patch_body(self, req: Request, current: JSON, rt: ResourceType) -> JSON:
        content_type = (req.headers.get("content-type") or "").split(";")[0].strip()
        try:
            if content_type == "application/apply-patch+yaml":
                patch_obj = yaml.safe_load(req.body.decode() or "{}")
            else:
                patch_obj = json.loads(req.body or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from None
        result: Any
        if content_type == "application/merge-patch+json":
            result = merge_patch(current, patch_obj)
        elif content_type == "application/strategic-merge-patch+json":
            result = strategic_merge(current, patch_obj)
        elif content_type == "application/json-patch+json":
            result = json_patch(current, patch_obj)
        elif content_type == "application/apply-patch+yaml":
            result = apply_patch(current, patch_obj)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            )
        if not isinstance(result, dict):
            raise errors.bad_request("the patched object is not a JSON object")
        return result

    def _patch(self, req: Request, info: RequestInfo, user: UserInfo) -> Response:
        rt = info.rt
        assert rt is not None
        content_type = (req.headers.get("content-type") or "").split(";")[0].strip()
        is_apply = content_type == "application/apply-patch+yaml"
        if is_apply and not req.param("fieldManager"):
            raise errors.bad_request(
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required '
                "for apply patch"
            )
        current = self.store.get(rt.key, info.namespace if rt.namespaced else "", info.name)
        if current is None:
            if not is_apply:
                raise errors.not_found(rt.name, info.name, rt.group)
            try:
                applied = yaml.safe_load(req.body.decode() or "{}")
            except yaml.YAMLError as exc:
                raise errors.bad_request(f"error decoding YAML: {exc}") from None
            if not isinstance(applied, dict):
                raise errors.bad_request("error decoding YAML: not an object")
            req_for_create = Request(
                "POST",
                req.target,
                req.headers,
                json.dumps(applied).encode(),
                req.cert_subject,
                req.cert_fingerprint,
            )
            create_info = RequestInfo(
                True, "create", info.path, info.group, info.version, info.resource, info.namespace, "", "", rt
            )
            applied.setdefault("metadata", {})["name"] = info.name
            req_for_create.body = json.dumps(applied).encode()
            response = (
                self._create_pod(req_for_create, create_info, user)
                if rt is PODS
                else self._create(req_for_create, create_info, user)
            )
            if response.status == 201 and not self._dry_run(req):
                self._mark_apply(rt, info)
            return response
        patched = self._apply_patch_body(req, current, rt)
        if not isinstance(patched, dict):
            raise errors.bad_request("the patched object is not a JSON object")
        if patched.get("metadata", {}).get("name", info.name) != info.name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        if content_type != "application/json-patch+json":
            report = schema.check_fields(patched, rt.model)
            if report.problems and req.param("fieldValidation") == "Strict":
                raise errors.bad_request(f"strict decoding error: {', '.join(report.problems)}")
            schema.drop_unknown(patched, report.unknown)
        return _ok(self._store_update(req, rt, current, patched, "Apply" if is_apply else "Update"))

    def _mark_apply(self, rt: ResourceType, info: RequestInfo) -> None:
        def mark(obj: JSON) -> None:
            for entry in obj["metadata"].get("managedFields") or []:
                entry["operation"] = "Apply"

        self.store.mutate(rt.key, info.namespace if rt.namespaced else "", info.name, mark)

    def _delete(self, req: Request, info: RequestInfo) -> Response:
        rt = info.rt
        assert rt is not None
        if rt is PODS:
            return self._delete_pod(req, info)
        opts = self.delete_options(req)
        obj = self._get(info)
        self._check_preconditions(obj, opts, rt)
        ns = info.namespace if rt.namespaced else ""
        if rt is NAMESPACES:
            if info.name in ("default", "kube-system", "kube-public"):
                raise errors.forbidden("namespaces", info.name, "", "this namespace may not be deleted")
            if self._dry_run(req):
                return _ok(obj)

            def terminate(o: JSON) -> None:
                o["metadata"].setdefault("deletionTimestamp", rfc3339())
                o["metadata"].setdefault("deletionGracePeriodSeconds", 0)
                o["status"] = {"phase": "Terminating"}

            result = self.store.mutate(NAMESPACES.key, "", info.name, terminate)
            return _ok(result or obj)
        if self._dry_run(req):
            removed: JSON | None = obj
        else:
            removed = self.store.remove(rt.key, ns, info.name)
        if removed is None:
            raise errors.not_found(rt.name, info.name, rt.group)
        if rt.returns_deleted_object:
            return _ok(removed)
        details: JSON = {"name": info.name}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.name
        details["uid"] = removed["metadata"].get("uid", "")
        return _ok(status_body(0, None, None, details, success=True))

    def _delete_collection(self, req: Request, info: RequestInfo) -> Response:
        rt = info.rt
        assert rt is not None
        labels, fields = self._selectors(req, rt)
        opts = self.delete_options(req)
        ns = info.namespace if rt.namespaced else None
        deleted: list[JSON] = []
        for obj in self.store.list(rt.key, ns):
            if not (match_labels(labels, obj) and match_fields(fields, obj)):
                continue
            name = obj["metadata"]["name"]
            if self._dry_run(req):
                deleted.append(obj)
            elif rt is PODS:
                result = self.c.delete_pod_gracefully(
                    obj["metadata"]["namespace"], name, opts.get("gracePeriodSeconds")
                )
                if result is not None:
                    deleted.append(result)
            else:
                result = self.store.remove(rt.key, obj["metadata"].get("namespace", ""), name)
                if result is not None:
                    deleted.append(result)
        for item in deleted:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return _ok(
            {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.store.current_rv)},
                "items": deleted,
            }
        )


def audit_id() -> str:
    return str(uuid.uuid4())
