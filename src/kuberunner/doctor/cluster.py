"""The Kubernetes side, in the order a job meets it: address, TLS, credentials, token, namespace, RBAC.

Each step is one check; a step that fails makes the ones that depend on it
"skipped (needs ...)", so the report shows the root cause, not its echoes.
Every call is made with the runner's own settings (``[runners.kubernetes]``,
else the in-cluster account, else the kubeconfig), exactly as a job would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kuberunner.config.schema import KubernetesConfig
from kuberunner.doctor import tls
from kuberunner.doctor.diagnose import token_fix
from kuberunner.doctor.model import CheckResult, Fix, RunnerReport, skipped
from kuberunner.doctor.token import (
    EXPIRY_WARNING_SECONDS,
    describe_token,
    expiry_text,
    service_account_of,
    token_facts,
)
from kuberunner.kube.client import KubeClient
from kuberunner.kube.connection import SA_DIR, ConnectionSettings, connect, resolve_settings
from kuberunner.kube.errors import (
    KubeAPIError,
    KubeConfigMissing,
    KubeError,
    KubeForbidden,
    KubeNotFound,
    KubeTLSError,
    KubeUnauthorized,
    KubeUnreachable,
)
from kuberunner.kube.manage import (
    SetupClient,
    binding_command,
    role_binding_object,
    role_object,
    runner_permissions,
    subject_for,
    to_yaml,
)
from kuberunner.kube.rbac import Permission

__all__ = ["Cluster", "check_cluster_access"]

Obj = dict[str, Any]


@dataclass
class Cluster:
    """What the access checks learned, for the pod checks that follow."""

    cfg: KubernetesConfig
    namespace: str
    client: KubeClient | None = None
    settings: ConnectionSettings | None = None
    username: str = ""
    version: Obj = field(default_factory=dict)
    ready: bool = False  # every access check passed (or only warned): pods can be tried
    blocker: str = ""  # the title of the check that failed, for "skipped (needs ...)"

    @property
    def server_minor(self) -> int:
        digits = "".join(ch for ch in str(self.version.get("minor", "")) if ch.isdigit())
        return int(digits) if digits else 0

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


def _toml(*lines: str) -> str:
    return "\n".join(["[runners.kubernetes]", *(f"  {line}" for line in lines)])


# ---------------------------------------------------------------------------- 1 address


def _address_evidence(cfg: KubernetesConfig, env: Mapping[str, str]) -> list[str]:
    lines = ["[runners.kubernetes] has no host"]
    if env.get("KUBERNETES_SERVICE_HOST"):
        lines.append(
            f"KUBERNETES_SERVICE_HOST is set, but there is no service account token at {SA_DIR}/token"
        )
    else:
        lines.append("not running inside a cluster (KUBERNETES_SERVICE_HOST is not set)")
    if env.get("KUBECONFIG"):
        lines.append(f"KUBECONFIG={env['KUBECONFIG']}: no such file")
    else:
        home = env.get("HOME") or str(Path.home())
        lines.append(f"no kubeconfig: KUBECONFIG is not set and {home}/.kube/config does not exist")
    return lines


def _source_text(settings: ConnectionSettings) -> str:
    if settings.kubeconfig:
        context = f", context {settings.context}" if settings.context else ""
        return f"from kubeconfig {settings.kubeconfig}{context}"
    return f"from {settings.source}"


async def _address(cluster: Cluster, env: Mapping[str, str]) -> CheckResult:
    title = "API address"
    try:
        settings = resolve_settings(cluster.cfg, environ=dict(env))
    except KubeConfigMissing:
        return CheckResult(
            "api-address",
            title,
            "fail",
            'no Kubernetes API address is configured (gitlab-runner: "no configuration has been provided")',
            tuple(_address_evidence(cluster.cfg, env)),
            (
                Fix(
                    "toml",
                    _toml('host = "https://<api-server>:6443"', 'ca_file = "/etc/kubernetes/pki/ca.crt"'),
                    note="tell kuberunner where the API server is (`kubectl cluster-info` shows it):",
                ),
            ),
        )
    cluster.settings = settings
    try:
        cluster.client = await connect(cluster.cfg, namespace=cluster.namespace, environ=dict(env))
    except Exception as exc:  # a kubeconfig can fail in many ways (YAML, context, exec plugin)
        where = settings.kubeconfig or settings.source
        return CheckResult(
            "api-address",
            title,
            "fail",
            f"the connection settings from {where} cannot be used: {type(exc).__name__}: {exc}",
            (),
            (
                Fix(
                    "kubectl",
                    "kubectl config view --minify",
                    note="check the kubeconfig context kuberunner uses:",
                ),
            ),
        )
    return CheckResult("api-address", title, "pass", f"{cluster.client.host} ({_source_text(settings)})")


# ---------------------------------------------------------------------------- 2 TLS


async def _tls_failure(
    cluster: Cluster, exc: KubeTLSError, env: Mapping[str, str], config_dir: Path
) -> CheckResult:
    assert cluster.client is not None and cluster.settings is not None
    host = cluster.client.host
    title = "API reachable, TLS trusted"
    evidence: list[str] = [str(exc)]
    try:
        info = tls.describe_certificate(await tls.fetch_server_certificate(host))
        evidence.extend(info.lines())
    except (OSError, ValueError) as fetch_error:
        info = None
        evidence.append(f"could not fetch the certificate to describe it: {fetch_error}")
    if exc.verify_code == 62:
        names = ", ".join(info.names) if info and info.names else "(none listed)"
        host_name, port = tls.host_port(host)
        first = info.names[0] if info and info.names else "<a name from the certificate>"
        return CheckResult(
            "api-tls",
            title,
            "fail",
            f"the API server's certificate is not valid for {host_name!r}; it lists: {names}",
            tuple(evidence),
            (
                Fix(
                    "toml",
                    _toml(f'host = "https://{first}:{port}"'),
                    note="address it by a name it is valid for:",
                ),
            ),
        )
    ca_file = cluster.settings.ca_file
    candidates = tls.ca_candidates(host, configured=ca_file, environ=env)
    if ca_file and not any(c.path == ca_file for c in candidates):
        evidence.append(f"ca_file {ca_file} does not exist on this machine")
    good = await tls.trusted_by(host, candidates)
    target = str(config_dir / "kubernetes-ca.crt")
    for candidate in candidates:
        if candidate is good:
            evidence.append(f"{candidate.label}: verifies this server")
            break
        evidence.append(f"{candidate.label}: does not verify this server")
    issuer = f" (issuer {info.issuer})" if info else ""
    summary = (
        f"the API server's certificate is not trusted{issuer}: x509: certificate signed by unknown authority"
    )
    if good is not None and good.path:
        fixes: tuple[Fix, ...] = (
            Fix("toml", _toml(f'ca_file = "{good.path}"'), note=f"{good.label} is the CA that signed it:"),
        )
    elif good is not None:
        fixes = (
            Fix(
                "kubectl",
                f"kubectl --kubeconfig {good.kubeconfig} config view --raw -o jsonpath="
                f"'{{.clusters[?(@.name==\"{good.cluster}\")].cluster.certificate-authority-data}}' "
                f"| base64 -d > {target}",
                note=f"the CA in {good.label} signed it; write it to a file:",
            ),
            Fix("toml", _toml(f'ca_file = "{target}"')),
        )
    else:
        if not candidates:
            evidence.append(
                "no cluster CA on this machine: not at /etc/kubernetes/pki/ca.crt (control-plane nodes), "
                "not at /var/run/secrets/kubernetes.io/serviceaccount/ca.crt (pods), none in a kubeconfig"
            )
        fixes = (
            Fix(
                "kubectl",
                "kubectl get configmap kube-root-ca.crt -n default "
                f"-o jsonpath='{{.data.ca\\.crt}}' > {target}",
                note="from a machine where kubectl works, save the cluster CA (or copy "
                "/etc/kubernetes/pki/ca.crt from a control-plane node):",
            ),
            Fix("toml", _toml(f'ca_file = "{target}"')),
        )
    return CheckResult("api-tls", title, "fail", summary, tuple(evidence), fixes)


async def _reach(cluster: Cluster, env: Mapping[str, str], config_dir: Path) -> tuple[CheckResult, bool]:
    """(result, unauthorized): a 401 here proves TLS works; the token check reports it."""
    assert cluster.client is not None and cluster.settings is not None
    title = "API reachable, TLS trusted"
    host = cluster.client.host
    unauthorized = False
    try:
        cluster.version = await cluster.client.version()
    except KubeTLSError as exc:
        return await _tls_failure(cluster, exc, env, config_dir), False
    except KubeUnreachable as exc:
        return (
            CheckResult(
                "api-tls",
                title,
                "fail",
                f"cannot connect to {host}",
                (str(exc),),
                (
                    Fix(
                        "text",
                        "check host (address and port: kube-apiserver listens on 6443 by default) and that "
                        "this machine can reach it (firewall, VPN, proxy)",
                    ),
                ),
            ),
            False,
        )
    except KubeUnauthorized:
        unauthorized = True
    except KubeAPIError:
        pass
    trust = cluster.settings.ca_file or (
        "the kubeconfig's CA" if cluster.settings.kubeconfig else "system trust"
    )
    version = cluster.version.get("gitVersion")
    answered = f"Kubernetes {version}" if version else "the API server answers"
    if host.startswith("http://"):
        return (
            CheckResult(
                "api-tls",
                title,
                "warn",
                f"{answered} over plain HTTP: the token crosses the network unencrypted",
                (),
                (Fix("toml", _toml(f'host = "https://{host[len("http://") :]}"')),),
            ),
            unauthorized,
        )
    return CheckResult("api-tls", title, "pass", f"{answered}; certificate verified ({trust})"), unauthorized


# ---------------------------------------------------------------------- 3, 4 credentials


async def _identity(client: KubeClient, namespace: str) -> tuple[str, bool, str]:
    """(username or "", unauthorized, how we know)."""
    try:
        review = await client.whoami()
        info = (review.get("status") or {}).get("userInfo") or {}
        return str(info.get("username") or ""), False, "SelfSubjectReview"
    except KubeUnauthorized:
        return "", True, ""
    except KubeForbidden as exc:
        return exc.user or "", False, f"the API's answer: {exc.message}"
    except KubeAPIError:
        pass  # no SelfSubjectReview API (before 1.28): a 403 from an access review names the user
    try:
        await client.access_review("create", "pods", namespace=namespace)
    except KubeUnauthorized:
        return "", True, ""
    except KubeForbidden as exc:
        return exc.user or "", False, f"the API's answer: {exc.message}"
    except KubeAPIError:
        pass
    return "", False, ""


def _credential_source(settings: ConnectionSettings) -> str:
    if settings.bearer_token:
        return {
            "config.toml host": "bearer_token from config.toml",
            "in-cluster service account": f"the pod's service account token ({SA_DIR}/token)",
        }.get(settings.source, "a bearer token")
    if settings.cert_file:
        return f"client certificate {settings.cert_file}"
    if settings.kubeconfig:
        return f"the user of kubeconfig {settings.kubeconfig}"
    return ""


def _anonymous(cluster: Cluster, how: str, *, refused: bool = False) -> CheckResult:
    """No credentials: the API ran the request as system:anonymous, or (``refused``, anonymous
    requests disabled) answered 401."""
    cfg = cluster.cfg
    evidence = [
        f"the API server sees the runner as system:anonymous ({how})" if how else "identity: system:anonymous"
    ]
    if cluster.settings is not None and cluster.settings.source == "config.toml host":
        evidence.append("config.toml: [runners.kubernetes] has no bearer_token and no cert_file/key_file")
    if cfg.service_account:
        evidence.append(
            f'service_account = "{cfg.service_account}" names the account job pods run as; '
            "it does not authenticate the runner"
        )
    ns = cluster.namespace
    sa = cfg.service_account or "kuberunner"
    summary = (
        "no credentials are configured, and the API server refuses anonymous requests (401 Unauthorized)"
        if refused
        else "no credentials reach the API server: requests run as system:anonymous "
        '(gitlab-runner: User "system:anonymous" cannot create resource "secrets")'
    )
    if refused:
        evidence[0] = "the API server answered 401 Unauthorized to a request without credentials"
    return CheckResult(
        "credentials",
        "credentials sent",
        "fail",
        summary,
        tuple(evidence),
        (
            Fix(
                "kubectl",
                f"kuberunner rbac --namespace {ns} --service-account {sa} --apply --write",
                note="create the runner's account, Role and token and write them into config.toml "
                "(needs an admin kubeconfig):",
            ),
            Fix(
                "toml",
                _toml('bearer_token = "<token of the runner\'s ServiceAccount>"'),
                note="or paste a token yourself (`kubectl -n <ns> create token <account> --duration=8760h`):",
            ),
        ),
    )


def _token_result(cluster: Cluster, unauthorized: bool, now: float) -> CheckResult:
    assert cluster.settings is not None
    settings = cluster.settings
    title = "credentials accepted"
    token = settings.bearer_token
    facts = token_facts(token) if token else None
    sa_ns = (facts.namespace if facts else "") or cluster.namespace
    sa_name = (facts.service_account if facts else "") or cluster.cfg.service_account or "kuberunner"
    if unauthorized:
        evidence = [
            'the API server answered 401 Unauthorized (gitlab-runner: "setting up credentials: Unauthorized")'
        ]
        if token and facts is not None:
            evidence.append(f"{_credential_source(settings)}: {describe_token(token, now)}")
            if facts.is_jwt and (facts.expires_at is None or facts.expires_at > now):
                evidence.append(
                    f"not expired, yet rejected: ServiceAccount {sa_ns}/{sa_name} was deleted or recreated, "
                    "or the token comes from another cluster"
                    + (f" (issuer {facts.issuer})" if facts.issuer else "")
                )
        if settings.kubeconfig and not token:
            return CheckResult(
                "token",
                title,
                "fail",
                "the API server rejects the kubeconfig's credentials (401 Unauthorized)",
                tuple(evidence),
                (
                    Fix(
                        "text",
                        "log in again so the kubeconfig holds valid credentials, or set host and "
                        "bearer_token in [runners.kubernetes]",
                    ),
                ),
            )
        return CheckResult(
            "token",
            title,
            "fail",
            "the API server rejects the bearer token (401 Unauthorized)",
            tuple(evidence),
            token_fix(sa_ns, sa_name),
        )
    who = cluster.username or "an identity the API did not name"
    summary = f"accepted: the API server sees {who}"
    if facts is not None and facts.is_jwt:
        summary += f"; the token {expiry_text(facts, now)}"
        if facts.expires_at is not None and facts.expires_at - now < EXPIRY_WARNING_SECONDS:
            return CheckResult(
                "token",
                title,
                "warn",
                summary,
                ("jobs will fail with 401 Unauthorized once it expires",),
                token_fix(sa_ns, sa_name),
            )
    return CheckResult("token", title, "pass", summary)


# --------------------------------------------------------------------------- 5 namespace


async def _allowed(client: KubeClient, perm: Permission, namespace: str) -> bool | None:
    """SelfSubjectAccessReview; None when the review itself could not be made."""
    try:
        answer = await client.access_review(
            perm.verb, perm.base_resource, group=perm.group, subresource=perm.subresource, namespace=namespace
        )
    except KubeAPIError:
        return None
    return bool((answer.get("status") or {}).get("allowed"))


_CREATE_PODS = Permission("pods", "create")


async def _namespace(cluster: Cluster) -> CheckResult:
    assert cluster.client is not None
    client, ns, user = cluster.client, cluster.namespace, cluster.username
    title = "namespace"
    home_ns, _ = service_account_of(user)
    here = await _allowed(client, _CREATE_PODS, ns)
    if here:
        setup = SetupClient.sharing(client)
        try:
            obj = await setup.get_namespace(ns)
        except KubeNotFound:
            return CheckResult(
                "namespace",
                title,
                "fail",
                f'namespace "{ns}" does not exist',
                (f"{user or 'the account'} may create pods there, but there is no such namespace",),
                (Fix("kubectl", f"kubectl create namespace {ns}"),),
            )
        except KubeAPIError:
            return CheckResult(
                "namespace",
                title,
                "pass",
                f'"{ns}": the account may create pods there (whether it exists shows when a pod is created)',
            )
        phase = (obj.get("status") or {}).get("phase", "")
        if phase == "Terminating":
            return CheckResult(
                "namespace",
                title,
                "fail",
                f'namespace "{ns}" is being deleted',
                (),
                (Fix("text", "wait until it is gone and create it again, or choose another namespace"),),
            )
        return CheckResult("namespace", title, "pass", f'"{ns}" exists and the account may create pods there')
    if home_ns and home_ns != ns:
        there = await _allowed(client, _CREATE_PODS, home_ns)
        if there:
            return CheckResult(
                "namespace",
                title,
                "fail",
                f'the runner works in "{ns}", but its account {user} has its rights in "{home_ns}" '
                f'(gitlab-runner: cannot create resource "secrets" ... in the namespace "{ns}")',
                (
                    f'may not create pods in "{ns}" (SelfSubjectAccessReview)',
                    f'may create pods in "{home_ns}", the service account\'s own namespace',
                ),
                (
                    Fix(
                        "toml",
                        _toml(f'namespace = "{home_ns}"'),
                        note="run jobs where the account has its rights:",
                    ),
                ),
            )
        return CheckResult(
            "namespace",
            title,
            "warn",
            f'the account {user} has no rights in "{ns}", nor in its own namespace "{home_ns}"',
            ("see the permissions check for what to grant",),
        )
    own = " (the service account's own namespace)" if home_ns == ns else ""
    if here is None:
        return CheckResult(
            "namespace", title, "warn", f'"{ns}"{own}: the access review failed, rights unknown'
        )
    return CheckResult(
        "namespace", title, "pass", f'"{ns}"{own}: no rights granted there yet, see permissions'
    )


# ------------------------------------------------------------------------- 6 permissions


def _rule_grants(rule: Obj, perm: Permission) -> bool:
    verbs = rule.get("verbs") or []
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    if not ("*" in verbs or perm.verb in verbs):
        return False
    if not ("*" in groups or perm.group in groups):
        return False
    sub = perm.subresource
    return (
        "*" in resources
        or perm.resource in resources
        or (bool(sub) and (f"{perm.base_resource}/*" in resources or f"*/{sub}" in resources))
    )


def unbound_roles(
    roles: Sequence[Obj], bindings: Sequence[Obj], subject: Obj, needed: Sequence[Permission]
) -> list[str]:
    """Names of Roles that grant everything ``needed`` but are not bound to ``subject``."""
    bound: set[str] = set()
    for binding in bindings:
        ref = binding.get("roleRef") or {}
        for sub in binding.get("subjects") or []:
            same = sub.get("kind") == subject.get("kind") and sub.get("name") == subject.get("name")
            if same and subject.get("kind") == "ServiceAccount":
                same = (
                    sub.get("namespace") or (binding.get("metadata") or {}).get("namespace")
                ) == subject.get("namespace")
            if same and ref.get("kind") == "Role":
                bound.add(str(ref.get("name")))
    out: list[str] = []
    for role in roles:
        name = str((role.get("metadata") or {}).get("name", ""))
        rules = role.get("rules") or []
        if name not in bound and all(any(_rule_grants(r, p) for r in rules) for p in needed):
            out.append(name)
    return out


_SELF_REVIEWS = {"authorization.k8s.io", "authentication.k8s.io"}


def extra_rights(rules: Sequence[Obj], perms: Sequence[Permission]) -> str:
    """What ``rules`` (a SelfSubjectRulesReview) grant beyond ``perms``, e.g. ``create pods/exec; list
    secrets``; "" when nothing. The self-review rules every account has are left out."""
    needed = {(p.group, p.resource, p.verb) for p in perms}
    any_group = {(p.resource, p.verb) for p in perms}
    extra: dict[str, list[str]] = {}
    for rule in rules:
        groups = [g for g in rule.get("apiGroups") or [] if g not in _SELF_REVIEWS]
        for group in groups:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    # apiGroups "*" covers the group a resource really lives in
                    covered = (
                        (resource, verb) in any_group if group == "*" else (group, resource, verb) in needed
                    )
                    if not covered:
                        name = resource if group in ("", "*") else f"{resource}.{group}"
                        extra.setdefault(name, []).append(verb)

    def phrase(resource: str, verbs: list[str]) -> str:
        what = "anything on" if "*" in verbs else ", ".join(dict.fromkeys(verbs))
        return f"{what} {'all resources' if resource == '*' else resource}"

    return "; ".join(phrase(r, v) for r, v in sorted(extra.items()))


async def _beyond_need(client: KubeClient, namespace: str, perms: Sequence[Permission]) -> str:
    try:
        review = await SetupClient.sharing(client).rules_review(namespace=namespace)
    except KubeAPIError:
        return ""
    return extra_rights((review.get("status") or {}).get("resourceRules") or [], perms)


async def _permissions(cluster: Cluster) -> CheckResult:
    assert cluster.client is not None
    client, ns = cluster.client, cluster.namespace
    title = "permissions"
    perms = runner_permissions()
    answers = await asyncio.gather(*(_allowed(client, p, ns) for p in perms))
    missing = [p for p, ok in zip(perms, answers, strict=True) if ok is False]
    unknown = [p for p, ok in zip(perms, answers, strict=True) if ok is None]
    required_missing = [p for p in missing if not p.optional]
    granted = len(perms) - len(missing) - len(unknown)
    if not missing and not unknown:
        extra = await _beyond_need(client, ns, perms)
        more = f"the account may also {extra}: more than kuberunner uses (`kuberunner rbac`: the exact Role)"
        return CheckResult(
            "permissions",
            title,
            "pass",
            f'all {len(perms)} permissions the runner uses are granted in "{ns}"',
            (more,) if extra else (),
        )
    if not missing:
        return CheckResult(
            "permissions",
            title,
            "warn",
            f"{len(unknown)} permissions could not be checked (SelfSubjectAccessReview failed)",
            tuple(f"{p.verb} {p.resource}: unknown" for p in unknown),
        )
    _, sa_name = service_account_of(cluster.username)
    subject = (
        subject_for(cluster.username, ns)
        if cluster.username
        else {"kind": "ServiceAccount", "name": cluster.cfg.service_account or "kuberunner", "namespace": ns}
    )
    role = sa_name or str(subject.get("name")) or "kuberunner"
    evidence = [
        f"{'optional' if p.optional else 'missing'}: {p.verb} {p.resource}"
        f"{' (' + p.group + ')' if p.group else ''} — {p.why}"
        for p in sorted(missing, key=lambda p: p.optional)
    ]
    fixes: list[Fix] = []
    if required_missing and granted == 0:
        setup = SetupClient.sharing(client)
        found: list[str] | None = None
        with contextlib.suppress(KubeAPIError):
            roles = (await setup.list_roles(namespace=ns)).get("items") or []
            bindings = (await setup.list_role_bindings(namespace=ns)).get("items") or []
            found = unbound_roles(roles, bindings, subject, [p for p in perms if not p.optional])
        if found:
            evidence.append(f'Role "{found[0]}" grants all of them but is not bound to {cluster.username}')
            fixes.append(
                Fix(
                    "kubectl",
                    binding_command(found[0], ns, found[0], subject),
                    note="bind the existing Role:",
                )
            )
        elif found is None:
            evidence.append(
                "no permission at all: usually a Role exists but no RoleBinding gives it to the account"
            )
            fixes.append(
                Fix(
                    "kubectl",
                    binding_command(role, ns, role, subject),
                    note=f'if you already created a Role "{role}" (`kubectl -n {ns} get roles`), bind it '
                    "(the usual missing piece):",
                )
            )
    objects = [role_object(role, ns, perms), role_binding_object(role, ns, role, subject)]
    fixes.append(
        Fix(
            "yaml",
            to_yaml(objects).rstrip("\n"),
            note=f"{'or ' if fixes else ''}apply exactly the Role the runner needs and bind it "
            "(`kubectl apply -f -`; `kuberunner rbac` prints the whole set):",
        )
    )
    names = ", ".join(f"{p.verb} {p.resource}" for p in (required_missing or missing))
    if required_missing:
        optional = len(missing) - len(required_missing)
        summary = (
            f'the account has none of the {len(perms)} permissions the runner uses in "{ns}"'
            if granted == 0
            else f'the account may not {names} in "{ns}"'
            + (f" (nor {optional} optional)" if optional else "")
        )
        return CheckResult("permissions", title, "fail", summary, tuple(evidence), tuple(fixes))
    extra = await _beyond_need(client, ns, perms)
    if extra:
        evidence.append(f"the account may also {extra}: more than kuberunner uses")
    return CheckResult(
        "permissions",
        title,
        "warn",
        f"optional permissions missing: {names} ({'; '.join(_without(missing))})",
        tuple(evidence),
        tuple(fixes),
    )


_WITHOUT = {
    "events": "job logs will not show why a pod waits",
    "secrets": "the secrets of a runner killed before it created the pod stay behind",
}


def _without(missing: Sequence[Permission]) -> list[str]:
    """What a user loses without these optional permissions, once each."""
    return list(dict.fromkeys(_WITHOUT.get(p.base_resource, p.why) for p in missing))


# ------------------------------------------------------------------------------- driver


async def check_cluster_access(
    report: RunnerReport,
    cfg: KubernetesConfig,
    *,
    environ: Mapping[str, str] | None = None,
    config_dir: Path,
    now: float | None = None,
) -> Cluster:
    """Checks 1-6. Returns the :class:`Cluster` (open client when reachable; caller closes it)."""
    env = dict(os.environ) if environ is None else dict(environ)
    now = time.time() if now is None else now
    cluster = Cluster(cfg, cfg.namespace or "default")
    order = [
        ("api-tls", "API reachable, TLS trusted"),
        ("credentials", "credentials sent"),
        ("token", "credentials accepted"),
        ("namespace", "namespace"),
        ("permissions", "permissions"),
    ]

    def skip_rest(start: int, needs: str) -> None:
        cluster.blocker = needs
        for check_id, title in order[start:]:
            report.add(skipped(check_id, title, needs))

    address = report.add(await _address(cluster, env))
    if address.failed:
        skip_rest(0, address.title)
        return cluster
    done = len(report.checks)
    try:
        await _access(cluster, report, env, config_dir, now, skip_rest)
    except KubeError as exc:  # the API server went away between two checks
        ran = len(report.checks) - done
        check_id, title = order[min(ran, len(order) - 1)]
        report.add(CheckResult(check_id, title, "fail", f"the API server stopped answering: {exc}"))
        skip_rest(ran + 1, title)
        cluster.ready = False
    return cluster


async def _access(
    cluster: Cluster,
    report: RunnerReport,
    env: Mapping[str, str],
    config_dir: Path,
    now: float,
    skip_rest: Callable[[int, str], None],
) -> None:
    """Checks 2-6, once the address is known."""
    reach, unauthorized = await _reach(cluster, env, config_dir)
    report.add(reach)
    if reach.failed:
        skip_rest(1, reach.title)
        return
    assert cluster.client is not None and cluster.settings is not None
    username, unauthorized_again, how = await _identity(cluster.client, cluster.namespace)
    unauthorized = unauthorized or unauthorized_again
    cluster.username = username
    settings = cluster.settings
    no_credentials = not (settings.bearer_token or settings.cert_file or settings.kubeconfig)
    if username == "system:anonymous" or (unauthorized and no_credentials):
        report.add(_anonymous(cluster, how, refused=username != "system:anonymous"))
        skip_rest(2, "credentials sent")
        return
    report.add(CheckResult("credentials", "credentials sent", "pass", _credential_source(settings) or "yes"))
    token = report.add(_token_result(cluster, unauthorized, now))
    if token.failed:
        skip_rest(3, token.title)
        return
    namespace = report.add(await _namespace(cluster))
    if namespace.failed:
        skip_rest(4, namespace.title)
        return
    permissions = report.add(await _permissions(cluster))
    if permissions.failed:
        cluster.blocker = permissions.title
        return
    cluster.ready = True
