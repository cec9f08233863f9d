"""explain(): the run-time line under a failed job, for each error the seed met."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from kuberunner.config.schema import KubernetesConfig
from kuberunner.doctor import explain
from kuberunner.kube.errors import (
    KubeConfigMissing,
    KubeError,
    KubeTLSError,
    KubeUnauthorized,
    KubeUnreachable,
    api_error,
)


def recorded(shared_dir: Path, scenario: str, index: int = 0) -> KubeError:
    data = json.loads((shared_dir / "docs/fixtures/kubernetes" / f"{scenario}.json").read_text())
    response = data["exchanges"][index]["response"]
    return api_error(response["status"], response["body"])


def cfg(**values: Any) -> KubernetesConfig:
    return KubernetesConfig.model_validate(values)


def lines(text: str) -> list[str]:
    out = text.splitlines()
    assert 1 <= len(out) <= 3, text
    return out


def test_seed1_no_address() -> None:
    text = explain(KubeConfigMissing("no Kubernetes API address"), cfg=cfg(), namespace="default")
    assert (
        lines(text)[1] == 'fix: set host = "https://<api-server>:6443" in [runners.kubernetes] of config.toml'
    )


def test_seed2_untrusted_ca() -> None:
    err = KubeTLSError(
        "TLS: the certificate of https://192.168.61.139:6443 is not trusted: "
        "unable to get local issuer certificate",
        verify_code=20,
    )
    first, fix, *_ = lines(explain(err, cfg=cfg(), namespace="default"))
    assert "is not trusted" in first and "cluster's CA" in first
    assert fix == 'fix: set ca_file = "/etc/kubernetes/pki/ca.crt" in [runners.kubernetes] of config.toml'


def test_hostname_mismatch_is_not_a_ca_problem() -> None:
    err = KubeTLSError(
        "TLS: ... Hostname mismatch, certificate is not valid for 'wrong.example'.", verify_code=62
    )
    assert "ca_file" not in explain(err, cfg=cfg(), namespace="default")


def test_unreachable() -> None:
    err = KubeUnreachable("get version: cannot connect to https://10.0.0.1:6443: Connection refused")
    text = explain(err, cfg=cfg(), namespace="default")
    assert "Connection refused" in lines(text)[0] and "host" in lines(text)[1]


def test_seed3_anonymous(shared_dir: Path) -> None:
    text = explain(recorded(shared_dir, "auth-anonymous-create-secret"), cfg=cfg(), namespace="kr-rec")
    first, fix, _ = lines(text)
    assert "system:anonymous" in first
    assert fix.startswith("fix: set bearer_token = ")


def test_seed4_unauthorized_names_the_account_not_the_token(shared_dir: Path) -> None:
    claims = {"sub": "system:serviceaccount:gitlab:gitlab-runner", "exp": 1_000_000_000}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    token = f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"
    err = recorded(shared_dir, "auth-invalid-token")
    assert isinstance(err, KubeUnauthorized)
    text = explain(err, cfg=cfg(bearer_token=token), namespace="gitlab")
    first, fix, _ = lines(text)
    assert "401 Unauthorized" in first and "expired 2001-09-09" in first
    assert fix == "fix: run `kubectl -n gitlab create token gitlab-runner --duration=8760h`"
    assert token not in text and payload not in text


def test_seed5_wrong_namespace(shared_dir: Path) -> None:
    text = explain(recorded(shared_dir, "auth-wrong-namespace"), cfg=cfg(), namespace="default")
    assert lines(text)[1] == 'fix: set namespace = "kr-rec" in [runners.kubernetes] of config.toml'


def test_seed6_missing_binding(shared_dir: Path) -> None:
    text = explain(recorded(shared_dir, "auth-sa-without-binding"), cfg=cfg(), namespace="kr-rec")
    assert lines(text)[1] == (
        "fix: run `kubectl create rolebinding nobind --namespace=kr-rec --role=nobind "
        "--serviceaccount=kr-rec:nobind`"
    )


def test_pod_security(shared_dir: Path) -> None:
    text = explain(
        recorded(shared_dir, "psa-privileged-denied"), cfg=cfg(privileged=True), namespace="psa-restricted"
    )
    first, fix, _ = lines(text)
    assert 'enforces Pod Security "restricted"' in first
    assert fix == (
        "fix: run `kubectl label --overwrite namespace psa-restricted "
        "pod-security.kubernetes.io/enforce=privileged`"
    )


@pytest.mark.parametrize("code", [409, 410, 500])
def test_other_errors_keep_kubernetes_words(code: int) -> None:
    err = api_error(code, {"message": "the server has a bad day", "reason": "X", "code": code})
    assert "the server has a bad day" in lines(explain(err, cfg=cfg(), namespace="ci"))[0]
