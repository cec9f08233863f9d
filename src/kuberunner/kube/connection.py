"""Where the Kubernetes API is and who we are to it, with gitlab-runner's precedence.

1. ``host`` in ``[runners.kubernetes]`` with ``ca_file``/``cert_file``/``key_file``/``bearer_token``;
2. else the in-cluster service account (``KUBERNETES_SERVICE_HOST`` and the mounted token);
3. else a kubeconfig (``KUBECONFIG`` or ``~/.kube/config``), ``context`` if set.
None of them → :class:`KubeConfigMissing` with the snippet that fixes it (the seed's failure 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.client import ApiClient, Configuration

from kuberunner.config.schema import KubernetesConfig
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeConfigMissing

__all__ = ["ConnectionSettings", "connect", "context_namespace", "resolve_settings"]

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class ConnectionSettings:
    """The resolved connection. ``source`` says where it came from, for doctor and errors."""

    source: str  # "config.toml host", "in-cluster service account", "kubeconfig"
    host: str
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    bearer_token: str = ""
    kubeconfig: str = ""
    context: str = ""

    def __repr__(self) -> str:
        return f"ConnectionSettings(source={self.source!r}, host={self.host!r})"


def resolve_settings(
    cfg: KubernetesConfig,
    *,
    bearer_token_override: str = "",
    environ: dict[str, str] | None = None,
    sa_dir: Path = SA_DIR,
    home: Path | None = None,
) -> ConnectionSettings:
    """Pick the connection source; pure apart from reading files' existence."""
    env = dict(os.environ) if environ is None else environ
    token = bearer_token_override if (bearer_token_override and cfg.bearer_token_overwrite_allowed) else ""
    if cfg.host:
        return ConnectionSettings(
            "config.toml host",
            cfg.host.rstrip("/"),
            ca_file=cfg.ca_file,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
            bearer_token=token or cfg.bearer_token,
        )
    if env.get("KUBERNETES_SERVICE_HOST") and (sa_dir / "token").is_file():
        host = env["KUBERNETES_SERVICE_HOST"]
        port = env.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:
            host = f"[{host}]"
        return ConnectionSettings(
            "in-cluster service account",
            f"https://{host}:{port}",
            ca_file=str(sa_dir / "ca.crt"),
            bearer_token=token or (sa_dir / "token").read_text().strip(),
        )
    kubeconfig = env.get("KUBECONFIG", "").split(os.pathsep)[0] if env.get("KUBECONFIG") else ""
    if not kubeconfig:
        candidate = (home or Path(env.get("HOME", str(Path.home())))) / ".kube" / "config"
        kubeconfig = str(candidate) if candidate.is_file() else ""
    if kubeconfig and Path(kubeconfig).is_file():
        return ConnectionSettings(
            "kubeconfig", "", kubeconfig=kubeconfig, context=cfg.context, bearer_token=token
        )
    raise KubeConfigMissing(
        "no Kubernetes API address: [runners.kubernetes] has no host, kuberunner is not running "
        "inside a cluster, and there is no kubeconfig (KUBECONFIG or ~/.kube/config).\n"
        "fix: add the API server address to config.toml, for example\n"
        "  [runners.kubernetes]\n"
        '  host = "https://<api-server>:6443"\n'
        '  ca_file = "/etc/kubernetes/pki/ca.crt"'
    )


async def connect(
    cfg: KubernetesConfig,
    *,
    namespace: str | None = None,
    bearer_token_override: str = "",
    environ: dict[str, str] | None = None,
    sa_dir: Path = SA_DIR,
) -> KubeClient:
    """A :class:`KubeClient` for the configured namespace (``default`` when empty, as gitlab-runner)."""
    settings = resolve_settings(
        cfg, bearer_token_override=bearer_token_override, environ=environ, sa_dir=sa_dir
    )
    configuration = Configuration()
    if settings.kubeconfig:
        await kconfig.load_kube_config(
            config_file=settings.kubeconfig,
            context=settings.context or None,
            client_configuration=configuration,
            persist_config=False,
        )
        if settings.bearer_token:
            configuration.api_key = {"BearerToken": f"Bearer {settings.bearer_token}"}
    else:
        configuration.host = settings.host
        if settings.ca_file:
            configuration.ssl_ca_cert = settings.ca_file
        if settings.cert_file and settings.key_file:
            configuration.cert_file = settings.cert_file
            configuration.key_file = settings.key_file
        if settings.bearer_token:
            configuration.api_key = {"BearerToken": f"Bearer {settings.bearer_token}"}
    api = ApiClient(configuration)
    return KubeClient(api, namespace or cfg.namespace or "default", source=settings.source)


def context_namespace(settings: ConnectionSettings) -> str:
    """The namespace the kubeconfig context of ``settings`` names ("" when none, or not a kubeconfig).

    ``kubectl`` works in that namespace; ``kuberunner exec`` does too unless config.toml says otherwise.
    """
    if not settings.kubeconfig:
        return ""
    try:
        contexts, active = kconfig.list_kube_config_contexts(settings.kubeconfig)
    except Exception:  # unreadable or malformed: connect() reports it with the file's name
        return ""
    chosen = (
        next((c for c in contexts if c.get("name") == settings.context), None) if settings.context else active
    )
    if not isinstance(chosen, dict):
        return ""
    context = chosen.get("context")
    namespace = context.get("namespace") if isinstance(context, dict) else None
    return namespace if isinstance(namespace, str) else ""
