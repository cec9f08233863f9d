"""``kuberunner rbac``: the account a runner needs, exactly: printed as YAML, or applied and configured.

Not to be confused with :mod:`kuberunner.kube.rbac`, the registry of the
permissions each Kubernetes call needs, which this package reads.
"""

from kuberunner.rbac.apply import AdminConnection, IssuedToken, admin_client, apply_account, kubeconfig_path
from kuberunner.rbac.manifests import DEFAULT_NAME, AccountPlan, plan_for, render_yaml
from kuberunner.rbac.snippet import ca_path, render_snippet, snippet_values, write_ca, write_snippet

__all__ = [
    "DEFAULT_NAME",
    "AccountPlan",
    "AdminConnection",
    "IssuedToken",
    "admin_client",
    "apply_account",
    "ca_path",
    "kubeconfig_path",
    "plan_for",
    "render_snippet",
    "render_yaml",
    "snippet_values",
    "write_ca",
    "write_snippet",
]
