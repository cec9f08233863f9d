"""``rbac --apply``: create the account with an administrator's kubeconfig, and get its token.

Objects are applied server-side (``fieldManager=kuberunner``), so running it
again updates them in place. The token comes from the ``service-account-token``
Secret the token controller fills in (long-lived, like the seed's 10-year
token); if no controller fills it in time (some distributions disable it), a
TokenRequest token is issued instead and its expiry is said. Tokens are
returned to the caller only, never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.client import ApiClient, Configuration

from kuberunner.kube.errors import KubeConfigMissing
from kuberunner.kube.manage import SetupClient
from kuberunner.rbac.manifests import AccountPlan
from kuberunner.util.logs import SECRETS

__all__ = ["AdminConnection", "IssuedToken", "admin_client", "apply_account", "kubeconfig_path"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class AdminConnection:
    """The administrator's cluster as the kubeconfig describes it: what the snippet points the runner at."""

    host: str
    ca_pem: str = field(default="", repr=False)  # "" = the server's certificate is publicly trusted
    kubeconfig: str = ""
    context: str = ""


@dataclass(frozen=True)
class IssuedToken:
    token: str = field(repr=False)
    source: str = ""  # for messages: where it came from and how long it lasts

    def __repr__(self) -> str:
        return f"IssuedToken(source={self.source!r})"


def kubeconfig_path(environ: Mapping[str, str] | None = None) -> Path:
    """``KUBECONFIG`` (its first file) or ``~/.kube/config``, as kubectl."""
    env = dict(os.environ) if environ is None else environ
    if env.get("KUBECONFIG"):
        return Path(env["KUBECONFIG"].split(os.pathsep)[0])
    return Path(env.get("HOME") or str(Path.home())) / ".kube" / "config"


def _require(kubeconfig: Path) -> None:
    if not kubeconfig.is_file():
        raise KubeConfigMissing(
            f"rbac --apply needs an administrator's kubeconfig, and {kubeconfig} does not exist; "
            "set KUBECONFIG or pass --kubeconfig"
        )


def _read_ca(configuration: Configuration) -> str:
    """The CA the kubeconfig trusts for this server (kubernetes_asyncio keeps it as a file)."""
    if not configuration.ssl_ca_cert:
        return ""
    return Path(str(configuration.ssl_ca_cert)).read_text(encoding="utf-8")


async def admin_client(
    plan: AccountPlan, *, kubeconfig: Path, context: str | None = None
) -> tuple[SetupClient, AdminConnection]:
    """A setup client with the kubeconfig's (administrator's) credentials."""
    _require(kubeconfig)
    configuration = Configuration()
    try:
        await kconfig.load_kube_config(
            config_file=str(kubeconfig),
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (kconfig.ConfigException, ValueError, KeyError, TypeError) as exc:
        raise KubeConfigMissing(f"kubeconfig {kubeconfig} cannot be used: {exc}") from None
    ca_pem = _read_ca(configuration)
    client = SetupClient(ApiClient(configuration), plan.namespace, source=f"kubeconfig {kubeconfig}")
    connection = AdminConnection(str(configuration.host), ca_pem, str(kubeconfig), context or "")
    return client, connection


def _secret_token(secret: Mapping[str, object]) -> tuple[str, str]:
    data = secret.get("data")
    if not isinstance(data, dict) or not data.get("token"):
        return "", ""
    try:
        token = base64.b64decode(str(data["token"])).decode()
        ca = base64.b64decode(str(data.get("ca.crt") or "")).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return token, ca


async def apply_account(
    client: SetupClient,
    plan: AccountPlan,
    *,
    token_timeout: float,
    token_duration: int,
    progress: Progress,
) -> tuple[IssuedToken, str]:
    """Apply every object, then get a token: (token, CA the Secret carried or "")."""
    for obj in plan.objects():
        await client.apply(obj)
        meta = obj["metadata"]
        where = f" in namespace {meta['namespace']}" if "namespace" in meta else ""
        progress(f"applied {obj['kind']} {meta['name']}{where}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + token_timeout
    while True:
        secret = await client.read_token_secret(plan.token_secret, namespace=plan.namespace)
        token, ca = _secret_token(secret)
        SECRETS.add(token)  # never in a log record
        if token:
            source = (
                f"Secret {plan.namespace}/{plan.token_secret} (no expiry; delete the Secret to revoke it)"
            )
            return IssuedToken(token, source), ca
        if loop.time() >= deadline:
            break
        await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))
    progress(
        f"the token controller did not fill Secret {plan.token_secret} within {token_timeout:g}s; "
        "issuing a TokenRequest token instead"
    )
    token, expires = await client.request_token(
        plan.service_account, expiration_seconds=token_duration, namespace=plan.namespace
    )
    SECRETS.add(token)
    return IssuedToken(token, f"TokenRequest, expires {expires or 'when the cluster decides'}"), ""
