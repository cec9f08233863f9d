"""At run time, the same diagnosis as ``kuberunner doctor``, in one to three lines for the job log.

The Kubernetes executor calls :func:`explain` when a job fails on a
:class:`~kuberunner.kube.errors.KubeError` and writes the result under the
error, so the job log says what doctor would say and the fix, not only
Kubernetes' message. Self-contained: no I/O, no network, never the token.
This module imports only ``kuberunner.kube``, ``kuberunner.config`` and
doctor's pure helpers (:mod:`.diagnose`, :mod:`.token`, :mod:`.model`).
"""

from __future__ import annotations

from kuberunner.config.schema import KubernetesConfig
from kuberunner.doctor.diagnose import Diagnosis, admission, token_fix
from kuberunner.doctor.model import Fix
from kuberunner.doctor.token import describe_token, token_facts
from kuberunner.kube.errors import (
    KubeAPIError,
    KubeConfigMissing,
    KubeError,
    KubeTLSError,
    KubeUnauthorized,
    KubeUnreachable,
)

__all__ = ["explain", "fix_line"]

_DOCTOR = "`kuberunner doctor --probe` checks the whole setup"


def fix_line(fix: Fix) -> str:
    """A fix on one line: TOML keys with their table, a command in backquotes, or the text."""
    if fix.kind == "toml":
        table = "[runners.kubernetes]"
        keys: list[str] = []
        for raw in fix.text.splitlines():
            line = raw.strip()
            if line.startswith("[") and not keys:
                table = line
            elif line and not line.startswith("["):
                keys.append(line)
        return f"fix: set {'; '.join(keys)} in {table} of config.toml"
    if fix.kind in ("kubectl", "yaml"):
        return f"fix: run `{fix.text.splitlines()[0]}`"
    return f"fix: {fix.text}"


def _lines(diagnosis: Diagnosis, *, doctor: bool = True) -> str:
    out = [diagnosis.summary]
    if diagnosis.fixes:
        out.append(fix_line(diagnosis.fixes[0]))
    if doctor:
        out.append(_DOCTOR)
    return "\n".join(out[:3])


def explain(error: KubeError, *, cfg: KubernetesConfig, namespace: str) -> str:
    """One to three lines: what went wrong in the runner's terms, the fix to apply, and a pointer.

    ``cfg`` is the runner's ``[runners.kubernetes]``; ``namespace`` the namespace the
    job ran in (after any ``KUBERNETES_NAMESPACE_OVERWRITE``). For the seed's 403
    ``User "system:serviceaccount:gitlab:gitlab-runner" cannot create resource "secrets"
    ... in the namespace "default"`` it returns::

        the runner works in namespace "default", but its account system:serviceaccount:gitlab:...
        fix: set namespace = "gitlab" in [runners.kubernetes] of config.toml
        `kuberunner doctor --probe` checks the whole setup
    """
    if isinstance(error, KubeConfigMissing):
        return _lines(
            Diagnosis(
                "no Kubernetes API address: no host in [runners.kubernetes], not running in a cluster, "
                "and no kubeconfig",
                fixes=(Fix("toml", '[runners.kubernetes]\n  host = "https://<api-server>:6443"'),),
            )
        )
    if isinstance(error, KubeTLSError):
        if error.verify_code == 62:
            return _lines(
                Diagnosis(
                    f"{error}: host must be a name or address the API server's certificate lists",
                    fixes=(Fix("text", "use one of the certificate's names in host (doctor shows them)"),),
                )
            )
        return _lines(
            Diagnosis(
                f"{error} (the cluster's CA is not trusted)",
                fixes=(Fix("toml", '[runners.kubernetes]\n  ca_file = "/etc/kubernetes/pki/ca.crt"'),),
            )
        )
    if isinstance(error, KubeUnreachable):
        return _lines(
            Diagnosis(
                f"{error}",
                fixes=(
                    Fix(
                        "text",
                        "check host (address and port) in [runners.kubernetes] and the network "
                        "path from the runner to the API server",
                    ),
                ),
            )
        )
    if isinstance(error, KubeUnauthorized):
        facts = token_facts(cfg.bearer_token) if cfg.bearer_token else None
        what = describe_token(cfg.bearer_token) if cfg.bearer_token else "no bearer_token is configured"
        sa_ns = (facts.namespace if facts else "") or cfg.namespace or namespace or "default"
        sa_name = (facts.service_account if facts else "") or cfg.service_account or "kuberunner"
        return _lines(
            Diagnosis(
                f"the Kubernetes API rejected the runner's credentials (401 Unauthorized): {what}",
                fixes=token_fix(sa_ns, sa_name)[:1],
            )
        )
    if isinstance(error, KubeAPIError):
        return _lines(admission(error, cfg, namespace))
    return _lines(Diagnosis(str(error)))
