"""The runner's account as Kubernetes objects: Namespace, ServiceAccount, Role, RoleBinding, token Secret.

The Role grants exactly what the runner's calls are tagged with
(:data:`kuberunner.kube.rbac.REGISTRY`, required and optional): no more verbs
than it uses, no fewer. Each rule carries a comment saying which call needs it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from kuberunner.config.schema import KubernetesConfig
from kuberunner.kube.manage import (
    namespace_object,
    role_binding_object,
    role_object,
    runner_permissions,
    service_account_object,
    token_secret_object,
)
from kuberunner.kube.rbac import Permission

__all__ = ["DEFAULT_NAME", "AccountPlan", "plan_for", "render_yaml"]

Obj = dict[str, Any]
DEFAULT_NAME = "kuberunner"


@dataclass(frozen=True)
class AccountPlan:
    """Where the runner works and who it is there."""

    namespace: str
    service_account: str

    @property
    def role(self) -> str:
        return self.service_account

    @property
    def token_secret(self) -> str:
        return f"{self.service_account}-token"

    @property
    def permissions(self) -> list[Permission]:
        return runner_permissions()

    def objects(self) -> list[Obj]:
        """In apply order: the namespace first, the token Secret after its ServiceAccount."""
        subject = {"kind": "ServiceAccount", "name": self.service_account, "namespace": self.namespace}
        return [
            namespace_object(self.namespace),
            service_account_object(self.service_account, self.namespace),
            role_object(self.role, self.namespace, self.permissions),
            role_binding_object(self.role, self.namespace, self.role, subject),
            token_secret_object(self.service_account, self.namespace),
        ]


def plan_for(
    cfg: KubernetesConfig | None, *, namespace: str | None = None, service_account: str | None = None
) -> AccountPlan:
    """Options win, then config.toml's ``namespace``/``service_account``, then ``kuberunner``."""
    ns = namespace or (cfg.namespace if cfg else "") or DEFAULT_NAME
    sa = service_account or (cfg.service_account if cfg else "") or DEFAULT_NAME
    return AccountPlan(ns, sa)


def _commented(obj: Obj, permissions: Sequence[Permission]) -> CommentedMap:
    """A Role with a comment above each rule naming why each verb is needed."""
    top = CommentedMap(obj)
    rules = CommentedSeq()
    for index, rule in enumerate(obj["rules"]):
        rules.append(CommentedMap(rule))
        resource, group = rule["resources"][0], rule["apiGroups"][0]
        whys = [
            f"{p.verb}: {p.why}{' (optional)' if p.optional else ''}"
            for p in permissions
            if p.resource == resource and p.group == group
        ]
        rules.yaml_set_comment_before_after_key(index, before="\n".join(whys), indent=2)
    top["rules"] = rules
    return top


def render_yaml(plan: AccountPlan) -> str:
    """One YAML stream for ``kubectl apply -f -``."""
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.explicit_start = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    documents: list[Any] = []
    for obj in plan.objects():
        documents.append(_commented(obj, plan.permissions) if obj["kind"] == "Role" else obj)
    buffer = io.StringIO()
    buffer.write(
        f"# kuberunner rbac: the account a runner uses in namespace {plan.namespace!r}.\n"
        "# Apply with `kubectl apply -f -`, or run `kuberunner rbac --apply`.\n"
    )
    yaml.dump_all(documents, buffer)
    return buffer.getvalue()
