"""The scripts Secret and the registry Secret: shape, encoding, which credentials go in."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from k8s_support import BASE_LABELS, validate

from kuberunner.executors.base import BuildError
from kuberunner.executors.kubernetes.podspec import (
    SECRET_MAX_BYTES,
    build_registry_secret,
    build_scripts_secret,
    registry_of,
)
from kuberunner.job import Credential

PASSWORD = "glcbt-64_Zx9yQ2mN4kP7rT1vW3sA"


def _credential(url: str, username: str = "gitlab-ci-token", password: str = PASSWORD) -> Credential:
    return Credential(type="registry", url=url, username=username, password=password)


def _dockerconfig(secret: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    return decoded


# ------------------------------------------------------------------------------ scripts


def test_scripts_secret_holds_each_script_base64_encoded() -> None:
    scripts = {"init": "#!/bin/sh\necho init\n", "build": "set -e\nmake 'ünïcode'\n", "file_VAR.txt": "x=1"}
    secret = build_scripts_secret("job-4821-scripts", "ci", BASE_LABELS, scripts)
    validate(secret)
    assert secret["type"] == "Opaque"
    assert secret["metadata"] == {"name": "job-4821-scripts", "namespace": "ci", "labels": BASE_LABELS}
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == scripts


def test_a_script_name_kubernetes_refuses_fails() -> None:
    with pytest.raises(BuildError, match="'bad/name'"):
        build_scripts_secret("s", "ci", {}, {"bad/name": "echo"})


def test_scripts_larger_than_a_secret_can_hold_fail_without_showing_them() -> None:
    secret_content = "TOPSECRET" * (SECRET_MAX_BYTES // 9 + 1)
    with pytest.raises(BuildError) as caught:
        build_scripts_secret("s", "ci", {}, {"file_BIG": secret_content})
    assert "1048576" in str(caught.value)
    assert "TOPSECRET" not in str(caught.value)


# ----------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("ruby:3.3", "docker.io"),
        ("library/ruby", "docker.io"),
        ("docker.io/library/ruby:3", "docker.io"),
        ("index.docker.io/library/ruby:3", "docker.io"),
        ("registry.example.com/acme/app:1", "registry.example.com"),
        ("Registry.Example.com:5000/app@sha256:abc", "registry.example.com:5000"),
        ("localhost/app", "localhost"),
        ("localhost:5000/app", "localhost:5000"),
    ],
)
def test_registry_of(image: str, registry: str) -> None:
    assert registry_of(image) == registry


def test_registry_secret_holds_credentials_for_the_jobs_registries_only() -> None:
    credentials = [
        _credential("registry.example.com"),
        _credential("https://other.example.com/v2/", "other", "other-password"),
        Credential(type="git", url="registry.example.com", username="u", password="p"),
    ]
    secret = build_registry_secret(
        "job-4821-registry",
        "ci",
        BASE_LABELS,
        credentials,
        ["registry.example.com/acme/app:1", "postgres:16"],
    )
    assert secret is not None
    validate(secret)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["labels"] == BASE_LABELS
    auth = base64.b64encode(f"gitlab-ci-token:{PASSWORD}".encode()).decode()
    assert _dockerconfig(secret) == {
        "auths": {"registry.example.com": {"username": "gitlab-ci-token", "password": PASSWORD, "auth": auth}}
    }


def test_docker_hub_credentials_match_docker_hub_images_whatever_the_url_spelling() -> None:
    secret = build_registry_secret(
        "r", "ci", {}, [_credential("https://index.docker.io/v1/", "hubuser", "hubpass")], ["ruby:3.3"]
    )
    assert secret is not None
    assert list(_dockerconfig(secret)["auths"]) == ["https://index.docker.io/v1/"]


def test_no_registry_secret_when_no_credential_applies() -> None:
    assert build_registry_secret("r", "ci", {}, [_credential("registry.example.com")], ["ruby:3.3"]) is None
    assert build_registry_secret("r", "ci", {}, [], ["registry.example.com/app"]) is None


def test_docker_auth_config_wins_over_payload_credentials() -> None:
    docker_auth_config = json.dumps(
        {
            "auths": {
                "registry.example.com": {"auth": base64.b64encode(b"deploy:token").decode()},
                "unused.example.com": {"auth": "eDp5"},
            },
            "credHelpers": {"gcr.io": "gcloud"},
        }
    )
    secret = build_registry_secret(
        "r",
        "ci",
        {},
        [_credential("registry.example.com"), _credential("quay.io", "robot", "robot-pass")],
        ["registry.example.com/app:1", "quay.io/org/tool:2"],
        docker_auth_config=docker_auth_config,
    )
    assert secret is not None
    validate(secret)
    auths = _dockerconfig(secret)["auths"]
    assert auths["registry.example.com"] == {"auth": base64.b64encode(b"deploy:token").decode()}
    assert auths["quay.io"]["username"] == "robot"
    assert set(auths) == {"registry.example.com", "quay.io"}


@pytest.mark.parametrize("value", ['{"auths": "nope-secret"}', "not json nope-secret"])
def test_a_malformed_docker_auth_config_fails_without_showing_it(value: str) -> None:
    with pytest.raises(BuildError) as caught:
        build_registry_secret("r", "ci", {}, [], ["ruby:3"], docker_auth_config=value)
    assert caught.value.reason == "runner_configuration_error"
    assert "DOCKER_AUTH_CONFIG" in str(caught.value)
    assert "nope-secret" not in str(caught.value)


def test_credential_passwords_never_show_in_reprs() -> None:
    assert PASSWORD not in repr(_credential("registry.example.com"))
