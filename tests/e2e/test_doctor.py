"""`kuberunner doctor` against the Kubernetes and GitLab doubles: the seed's eight failures, one by one.

Each test stages one failure of the seed guide (`shared/seed/000_*.txt`, see
`docs/seed-walkthrough.md`) on a double whose error answers are the recorded
ones, runs the real CLI and asserts the failing check, its evidence and the
fix a user would paste. The last tests show a correct setup passing and a
probe pod deleted on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomlkit
import trustme
from tests.doubles.gitlab import GitLabDouble
from tests.doubles.kube import KubeDouble, Timings

from kuberunner.kube.manage import runner_permissions
from kuberunner.kube.rbac import rules_for

NS = "gitlab"
SA = "gitlab-runner"
RULES = rules_for(runner_permissions())
# The seed's failure 7, verbatim from containerd (the IP is registry.gitlab.com's).
HELPER = "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-7178588d"
PULL_REFUSED = (
    f'failed to pull and unpack image "{HELPER}": failed to resolve reference "{HELPER}": failed to do '
    'request: Head "https://registry.gitlab.com/v2/gitlab-org/gitlab-runner/gitlab-runner-helper/manifests/'
    'x86_64-7178588d": dial tcp 35.227.35.254:443: connect: connection refused'
)


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeDouble]:
    with KubeDouble(state_dir=tmp_path / "kube", timings=Timings(grace_period_cap=1)) as api:
        yield api
        assert api.errors == []


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME: no ~/.kube/config unless a test writes one."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def write_config(path: Path, gitlab: GitLabDouble, kubernetes: dict[str, Any]) -> Path:
    runner = {
        "name": "k8s-runner",
        "url": gitlab.url,
        "token": gitlab.create_runner().token,
        "executor": "kubernetes",
        "kubernetes": kubernetes,
    }
    path.write_text(tomlkit.dumps({"concurrent": 1, "runners": [runner]}))
    return path


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "CONFIG_FILE")
    }
    env.update(HOME=str(home), **extra)
    return env


def run_doctor(config: Path, home: Path, *args: str, **env: str) -> tuple[int, dict[str, Any], str]:
    """(exit code, the JSON report's single runner, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "kuberunner", "doctor", "-c", str(config), "--format", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(home, **env),
    )
    assert proc.stdout, proc.stderr
    report = json.loads(proc.stdout)
    assert len(report["runners"]) == 1
    return proc.returncode, report["runners"][0], proc.stderr


def check(runner: dict[str, Any], check_id: str) -> dict[str, Any]:
    found = [c for c in runner["checks"] if c["id"] == check_id]
    assert found, f"no check {check_id!r} in {[c['id'] for c in runner['checks']]}"
    return found[0]


def text_of(result: dict[str, Any]) -> str:
    """Summary, evidence and fixes of one check as one string, for `in` assertions."""
    fixes = [f"{f['note']}\n{f['text']}" for f in result["fixes"]]
    return "\n".join([result["summary"], *result["evidence"], *fixes])


def fix_texts(result: dict[str, Any], kind: str) -> list[str]:
    return [f["text"] for f in result["fixes"] if f["kind"] == kind]


def statuses(runner: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in runner["checks"]}


def admin(kube: KubeDouble) -> httpx.Client:
    verify = ssl.create_default_context(cafile=kube.ca_file)
    return httpx.Client(
        base_url=kube.host, verify=verify, headers={"Authorization": f"Bearer {kube.admin_token}"}
    )


def good_kubernetes(kube: KubeDouble, **changes: Any) -> dict[str, Any]:
    """A correct [runners.kubernetes]: the seed's final setup, with a Role that has exactly what we need."""
    token = kube.add_service_account(NS, SA, rules=RULES, expiration=90 * 86400)
    table: dict[str, Any] = {
        "host": kube.host,
        "ca_file": kube.ca_file,
        "bearer_token": token,
        "namespace": NS,
        "service_account": SA,
        "image": "maven:3.6.3-openjdk-17",
        "helper_image": "gitlab/gitlab-runner-helper:x86_64-v14.10.2",
        "poll_timeout": 30,
    }
    table.update(changes)
    return table


# ------------------------------------------------------------------------------- seed 1-6


def test_seed1_no_api_address(tmp_path: Path, home: Path, gitlab: GitLabDouble) -> None:
    config = write_config(tmp_path / "config.toml", gitlab, {"namespace": NS})
    code, runner, _ = run_doctor(config, home)
    assert code == 1
    address = check(runner, "api-address")
    assert address["status"] == "fail"
    assert "no Kubernetes API address" in address["summary"]
    assert "[runners.kubernetes] has no host" in address["evidence"]
    assert any("no kubeconfig" in line and str(home) in line for line in address["evidence"])
    assert 'host = "https://<api-server>:6443"' in fix_texts(address, "toml")[0]
    # no noise after the root cause
    for later in ("api-tls", "credentials", "token", "namespace", "permissions", "pod"):
        assert check(runner, later)["summary"] == "skipped (needs API address)"
    assert check(runner, "gitlab")["status"] == "pass"


def test_seed2_untrusted_ca_found_in_kubeconfig(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    kubeconfig = kube.kubeconfig(home / "admin.kubeconfig")
    config = write_config(tmp_path / "config.toml", gitlab, {"host": kube.host, "namespace": NS})
    code, runner, _ = run_doctor(config, home, KUBECONFIG=str(kubeconfig))
    assert code == 1
    assert check(runner, "api-address")["status"] == "pass"
    tls = check(runner, "api-tls")
    assert tls["status"] == "fail"
    assert "x509: certificate signed by unknown authority" in tls["summary"]
    evidence = "\n".join(tls["evidence"])
    assert "unable to get local issuer certificate" in evidence  # the handshake's own words
    assert "issuer" in evidence and "kube-double" in evidence  # who signed what the server presented
    assert "127.0.0.1" in evidence  # the names in the certificate
    assert (
        f"kubeconfig {kubeconfig}, cluster 'kube-double'" in evidence and "verifies this server" in evidence
    )
    extract = fix_texts(tls, "kubectl")[0]
    assert "certificate-authority-data" in extract and "base64 -d" in extract
    ca_target = tmp_path / "kubernetes-ca.crt"
    assert f'ca_file = "{ca_target}"' in fix_texts(tls, "toml")[0]
    assert check(runner, "credentials")["summary"] == "skipped (needs API reachable, TLS trusted)"


def test_seed2_untrusted_ca_with_ca_file_on_this_machine(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    """ca_file points at a file that is not the cluster's CA; the kubeconfig's certificate-authority is."""
    wrong = tmp_path / "wrong-ca.crt"
    wrong.write_text(Path(kube.admin_cert[0]).read_text())  # some other certificate
    kubeconfig = home / ".kube" / "config"
    kubeconfig.parent.mkdir()
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "prod", "cluster": {"server": kube.host, "certificate-authority": kube.ca_file}}
                ],
                "users": [],
                "contexts": [],
            }
        )
    )
    config = write_config(tmp_path / "config.toml", gitlab, {"host": kube.host, "ca_file": str(wrong)})
    code, runner, _ = run_doctor(config, home)
    assert code == 1
    tls = check(runner, "api-tls")
    assert f"ca_file {wrong}: does not verify this server" in tls["evidence"]
    assert fix_texts(tls, "toml") == [f'[runners.kubernetes]\n  ca_file = "{kube.ca_file}"']


def test_seed2_no_ca_anywhere_says_where_it_lives(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    config = write_config(tmp_path / "config.toml", gitlab, {"host": kube.host})
    _, runner, _ = run_doctor(config, home)
    tls = check(runner, "api-tls")
    assert tls["status"] == "fail"
    assert any("/etc/kubernetes/pki/ca.crt" in line for line in tls["evidence"])
    assert "kube-root-ca.crt" in fix_texts(tls, "kubectl")[0]


def test_seed3_no_credentials_is_anonymous(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    config = write_config(
        tmp_path / "config.toml",
        gitlab,
        {"host": kube.host, "ca_file": kube.ca_file, "service_account": SA, "namespace": NS},
    )
    code, runner, _ = run_doctor(config, home)
    assert code == 1
    assert check(runner, "api-tls")["status"] == "pass"
    creds = check(runner, "credentials")
    assert creds["status"] == "fail"
    assert "system:anonymous" in creds["summary"]
    evidence = "\n".join(creds["evidence"])
    assert 'User \\"system:anonymous\\" cannot create resource \\"selfsubjectreviews\\"' in json.dumps(
        evidence
    )
    assert f'service_account = "{SA}" names the account job pods run as' in evidence
    assert "no bearer_token" in evidence
    assert "bearer_token = " in fix_texts(creds, "toml")[0]
    assert f"kuberunner rbac --namespace {NS} --service-account {SA} --apply --write" in fix_texts(
        creds, "kubectl"
    )
    assert check(runner, "token")["summary"] == "skipped (needs credentials sent)"


def test_seed4_placeholder_token_is_unauthorized(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    placeholder = "先随便写一个"  # the seed's "write anything for now"
    config = write_config(
        tmp_path / "config.toml",
        gitlab,
        {"host": kube.host, "ca_file": kube.ca_file, "bearer_token": placeholder, "service_account": SA},
    )
    code, runner, stderr = run_doctor(config, home)
    assert code == 1
    assert check(runner, "credentials")["status"] == "pass"
    token = check(runner, "token")
    assert token["status"] == "fail"
    assert "401 Unauthorized" in token["summary"]
    assert any("not a JWT" in line and "placeholder" in line for line in token["evidence"])
    assert f"kubectl -n default create token {SA} --duration=8760h" in fix_texts(token, "kubectl")
    assert check(runner, "namespace")["summary"] == "skipped (needs credentials accepted)"
    assert placeholder not in json.dumps(runner, ensure_ascii=False) + stderr


def test_seed4_token_of_deleted_account(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    token = kube.add_service_account(NS, SA, rules=RULES)
    with admin(kube) as client:
        assert client.delete(f"/api/v1/namespaces/{NS}/serviceaccounts/{SA}").status_code == 200
    config = write_config(
        tmp_path / "config.toml",
        gitlab,
        {"host": kube.host, "ca_file": kube.ca_file, "bearer_token": token, "namespace": NS},
    )
    _, runner, stderr = run_doctor(config, home)
    result = check(runner, "token")
    assert result["status"] == "fail"
    evidence = "\n".join(result["evidence"])
    assert f"JWT for system:serviceaccount:{NS}:{SA}" in evidence and "expires" in evidence
    assert f"ServiceAccount {NS}/{SA} was deleted or recreated" in evidence
    assert f"kubectl -n {NS} create token {SA} --duration=8760h" in fix_texts(result, "kubectl")
    assert token not in json.dumps(runner) + stderr


def test_seed5_rights_are_in_another_namespace(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    kubernetes = good_kubernetes(kube)
    del kubernetes["namespace"]  # the seed ran in "default"
    config = write_config(tmp_path / "config.toml", gitlab, kubernetes)
    code, runner, _ = run_doctor(config, home)
    assert code == 1
    assert check(runner, "token")["status"] == "pass"
    namespace = check(runner, "namespace")
    assert namespace["status"] == "fail"
    assert f'has its rights in "{NS}"' in namespace["summary"] and '"default"' in namespace["summary"]
    assert fix_texts(namespace, "toml") == [f'[runners.kubernetes]\n  namespace = "{NS}"']
    assert check(runner, "permissions")["summary"] == "skipped (needs namespace)"


def _role_without_binding(kube: KubeDouble, role: str) -> str:
    token = kube.add_service_account(NS, SA)  # no Role, no RoleBinding
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": role},
        "rules": RULES,
    }
    with admin(kube) as client:
        created = client.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles", json=body)
        assert created.status_code == 201, created.text
    return token


def test_seed6_role_without_rolebinding(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    token = _role_without_binding(kube, SA)
    kubernetes = {"host": kube.host, "ca_file": kube.ca_file, "bearer_token": token, "namespace": NS}
    config = write_config(tmp_path / "config.toml", gitlab, kubernetes)
    code, runner, _ = run_doctor(config, home)
    assert code == 1
    assert check(runner, "namespace")["status"] == "pass"
    permissions = check(runner, "permissions")
    assert permissions["status"] == "fail"
    assert permissions["summary"] == (
        f'the account has none of the {len(runner_permissions())} permissions the runner uses in "{NS}"'
    )
    assert any("missing: create secrets" in line for line in permissions["evidence"])
    seed_fix = f"kubectl create rolebinding {SA} --namespace={NS} --role={SA} --serviceaccount={NS}:{SA}"
    assert fix_texts(permissions, "kubectl") == [seed_fix]
    (yaml_fix,) = fix_texts(permissions, "yaml")
    assert "kind: Role\n" in yaml_fix and "kind: RoleBinding\n" in yaml_fix
    assert check(runner, "pod")["summary"] == "skipped (needs permissions)"


def test_seed6_unbound_role_named_when_the_account_may_read_roles(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    read_rbac = [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["roles", "rolebindings"],
            "verbs": ["list"],
        }
    ]
    token = kube.add_service_account(NS, SA, cluster_rules=read_rbac)
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "ci"},
        "rules": RULES,
    }
    with admin(kube) as client:
        assert (
            client.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles", json=body).status_code
            == 201
        )
    kubernetes = {"host": kube.host, "ca_file": kube.ca_file, "bearer_token": token, "namespace": NS}
    _, runner, _ = run_doctor(write_config(tmp_path / "config.toml", gitlab, kubernetes), home)
    permissions = check(runner, "permissions")
    assert (
        f'Role "ci" grants all of them but is not bound to system:serviceaccount:{NS}:{SA}'
        in permissions["evidence"]
    )
    assert fix_texts(permissions, "kubectl") == [
        f"kubectl create rolebinding ci --namespace={NS} --role=ci --serviceaccount={NS}:{SA}"
    ]


# ------------------------------------------------------------------------------- seed 7, 8


def _probe_leftovers(kube: KubeDouble) -> list[str]:
    names = [p["metadata"]["name"] for p in kube.pods(NS)]
    names += [
        s["metadata"]["name"]
        for s in kube.secrets(NS)
        if s["metadata"]["name"].startswith("kuberunner-doctor")
    ]
    return names


def test_seed7_unpullable_helper_image(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    kube.faults.image_pull_error("registry.gitlab.com/*", PULL_REFUSED)
    config = write_config(tmp_path / "config.toml", gitlab, good_kubernetes(kube, helper_image=HELPER))
    # without --probe: the registry heuristic warns, the dry run passes
    code, runner, _ = run_doctor(config, home)
    assert code == 0
    helper = check(runner, "helper-image")
    assert helper["status"] == "warn"
    assert "registry.gitlab.com, a registry none of the job images use (docker.io)" in helper["summary"]
    # with --probe: the pull fails on a node and says so
    code, runner, _ = run_doctor(config, home, "--probe")
    assert code == 1
    pod = check(runner, "pod")
    assert pod["status"] == "fail"
    assert pod["summary"] == f"the nodes cannot reach registry registry.gitlab.com to pull {HELPER}"
    assert f"container 'init', image {HELPER}, registry registry.gitlab.com" in pod["evidence"]
    assert any("dial tcp 35.227.35.254:443: connect: connection refused" in line for line in pod["evidence"])
    mirror = "docker.io/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-7178588d"
    assert fix_texts(pod, "toml") == [f'[runners.kubernetes]\n  helper_image = "{mirror}"']
    assert f"ctr -n k8s.io image pull {HELPER}" in fix_texts(pod, "kubectl")
    assert _probe_leftovers(kube) == []


def test_seed8_pod_pending_on_slow_pull(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    kube.faults.slow_image_pull("docker.io/gitlab/*", 60)
    config = write_config(
        tmp_path / "config.toml",
        gitlab,
        good_kubernetes(
            kube, helper_image="docker.io/gitlab/gitlab-runner-helper:x86_64-v14.10.2", poll_timeout=2
        ),
    )
    code, runner, _ = run_doctor(config, home, "--probe")
    assert code == 1
    pod = check(runner, "pod")
    assert pod["summary"] == (
        "the pod did not start within poll_timeout (2s): image "
        "docker.io/gitlab/gitlab-runner-helper:x86_64-v14.10.2 was still being pulled from docker.io"
    )
    assert any("Pulling image" in line for line in pod["evidence"])
    assert "ctr -n k8s.io image pull docker.io/gitlab/gitlab-runner-helper:x86_64-v14.10.2" in fix_texts(
        pod, "kubectl"
    )
    assert "poll_timeout = 600" in fix_texts(pod, "toml")[0]
    assert _probe_leftovers(kube) == []


def test_seed8_pod_pending_unschedulable(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    config = write_config(
        tmp_path / "config.toml",
        gitlab,
        good_kubernetes(kube, node_selector={"disktype": "ssd"}, poll_timeout=1),
    )
    code, runner, _ = run_doctor(config, home, "--probe")
    assert code == 1
    pod = check(runner, "pod")
    assert "was not scheduled within poll_timeout (1s): no node matches" in pod["summary"]
    assert any("didn't match Pod's node affinity/selector" in line for line in pod["evidence"])
    assert 'node_selector in config.toml: "disktype" = "ssd"' in pod["evidence"]
    assert "kubectl get nodes --show-labels" in fix_texts(pod, "kubectl")
    assert _probe_leftovers(kube) == []


# ------------------------------------------------------------------------------- beyond the seed


def test_pod_security_refuses_privileged(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    kubernetes = good_kubernetes(kube, privileged=True, services=[{"name": "docker:dind", "alias": "docker"}])
    with admin(kube) as client:
        patch = {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
        answer = client.patch(
            f"/api/v1/namespaces/{NS}", json=patch, headers={"Content-Type": "application/merge-patch+json"}
        )
        assert answer.status_code == 200, answer.text
    _, runner, _ = run_doctor(write_config(tmp_path / "config.toml", gitlab, kubernetes), home)
    pod = check(runner, "pod")
    assert pod["status"] == "fail"
    assert pod["summary"].startswith(f'namespace "{NS}" enforces Pod Security "restricted"')
    assert any(line.startswith("violation: privileged (container") for line in pod["evidence"])
    assert fix_texts(pod, "kubectl") == [
        f"kubectl label --overwrite namespace {NS} pod-security.kubernetes.io/enforce=privileged"
    ]
    assert check(runner, "dind")["status"] == "pass"


def test_everything_right_passes_with_probe(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    config = write_config(tmp_path / "config.toml", gitlab, good_kubernetes(kube))
    code, runner, _ = run_doctor(config, home, "--probe")
    assert code == 0, json.dumps(runner, indent=1)
    assert set(statuses(runner).values()) == {"pass"}, statuses(runner)
    assert "a job pod started in" in check(runner, "pod")["summary"]
    assert _probe_leftovers(kube) == []
    # people get the same report as readable text; pipes get no colour codes
    proc = subprocess.run(
        [sys.executable, "-m", "kuberunner", "doctor", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(home),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\x1b[" not in proc.stdout
    assert "  PASS  permissions" in proc.stdout
    assert proc.stdout.rstrip().endswith("ready to run jobs")


def test_probe_pod_deleted_on_ctrl_c(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    kube.faults.slow_image_pull("docker.io/gitlab/*", 120)
    config = write_config(
        tmp_path / "config.toml",
        gitlab,
        good_kubernetes(
            kube, helper_image="docker.io/gitlab/gitlab-runner-helper:x86_64-v14.10.2", poll_timeout=100
        ),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kuberunner", "doctor", "-c", str(config), "--probe"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(home),
    )
    try:
        kube.wait_for(lambda: bool(kube.pods(NS)), timeout=30, what="the probe pod")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert _probe_leftovers(kube) == []


def test_gitlab_side_tls_and_token(tmp_path: Path, home: Path) -> None:
    """A shell runner: only GitLab is checked. Untrusted certificate, then a token GitLab does not know."""
    ca = trustme.CA(organization_name="gitlab-internal-ca")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with GitLabDouble(ssl_context=context) as gitlab:
        runner = {
            "name": "shell",
            "url": gitlab.url,
            "token": gitlab.create_runner().token,
            "executor": "shell",
        }
        config = tmp_path / "config.toml"
        config.write_text(tomlkit.dumps({"runners": [runner]}))
        code, report, _ = run_doctor(config, home)
        assert code == 1
        assert [c["id"] for c in report["checks"]] == ["config", "gitlab"]
        result = check(report, "gitlab")
        assert result["summary"] == f"GitLab's certificate ({gitlab.url}) is not trusted"
        assert any("issuer" in line and "gitlab-internal-ca" in line for line in result["evidence"])
        assert "tls-ca-file = " in fix_texts(result, "toml")[0]

        ca.cert_pem.write_to_path(str(tmp_path / "gitlab-ca.crt"))
        runner["tls-ca-file"] = str(tmp_path / "gitlab-ca.crt")
        config.write_text(tomlkit.dumps({"runners": [runner]}))
        code, report, _ = run_doctor(config, home)
        assert code == 0 and check(report, "gitlab")["summary"].endswith(
            "knows the runner token as runner #1"
        )

        runner["token"] = "glrt-NotKnownToThisGitLab000"
        config.write_text(tomlkit.dumps({"runners": [runner]}))
        code, report, stderr = run_doctor(config, home)
        assert code == 1
        assert "does not know the runner token" in check(report, "gitlab")["summary"]
        assert "glrt-NotKnownToThisGitLab000" not in json.dumps(report) + stderr


def test_unknown_runner_name_is_a_usage_error(tmp_path: Path, home: Path, gitlab: GitLabDouble) -> None:
    config = write_config(tmp_path / "config.toml", gitlab, {})
    proc = subprocess.run(
        [sys.executable, "-m", "kuberunner", "doctor", "-c", str(config), "--runner", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(home),
    )
    assert proc.returncode == 2
    assert 'no runner named "nope"' in proc.stderr and '"k8s-runner"' in proc.stderr


def test_kubeconfig_is_used_when_config_toml_has_no_host(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    token = kube.add_service_account(NS, SA, rules=RULES, expiration=90 * 86400)
    kubeconfig = kube.kubeconfig(home / "runner.kubeconfig", token=token, namespace=NS)
    config = write_config(tmp_path / "config.toml", gitlab, {"namespace": NS, "image": "maven:3"})
    code, runner, _ = run_doctor(config, home, KUBECONFIG=str(kubeconfig))
    assert code == 0, json.dumps(runner, indent=1)
    assert check(runner, "api-address")["summary"] == f"{kube.host} (from kubeconfig {kubeconfig})"
    assert check(runner, "credentials")["summary"] == f"the user of kubeconfig {kubeconfig}"
    assert check(runner, "permissions")["status"] == "pass"


def test_nothing_listening_at_host(tmp_path: Path, home: Path, gitlab: GitLabDouble) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path / "config.toml", gitlab, {"host": f"https://127.0.0.1:{port}"})
    code, runner, _ = run_doctor(config, home)
    assert code == 1
    reach = check(runner, "api-tls")
    assert reach["summary"] == f"cannot connect to https://127.0.0.1:{port}"
    assert "6443" in fix_texts(reach, "text")[0]
    assert check(runner, "credentials")["status"] == "skip"


def test_the_seeds_final_role_works_but_grants_more(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    """The Role the guide ended with: enough to run jobs, no events, and more than a runner needs."""
    seed_role = [
        {"apiGroups": ["*"], "resources": ["pods"], "verbs": ["list", "get", "watch", "create", "delete"]},
        {"apiGroups": ["*"], "resources": ["pods/exec"], "verbs": ["create"]},
        {"apiGroups": ["*"], "resources": ["pods/log"], "verbs": ["get"]},
        {
            "apiGroups": ["*"],
            "resources": ["pods/attach"],
            "verbs": ["list", "get", "create", "delete", "update"],
        },
        {
            "apiGroups": ["*"],
            "resources": ["secrets"],
            "verbs": ["list", "get", "create", "delete", "update"],
        },
        {
            "apiGroups": ["*"],
            "resources": ["configmaps"],
            "verbs": ["list", "get", "create", "delete", "update"],
        },
    ]
    token = kube.add_service_account(NS, SA, rules=seed_role, expiration=90 * 86400)
    kubernetes = good_kubernetes(kube, bearer_token=token)
    code, runner, _ = run_doctor(write_config(tmp_path / "config.toml", gitlab, kubernetes), home)
    assert code == 0
    permissions = check(runner, "permissions")
    assert permissions["status"] == "warn"
    assert permissions["summary"] == (
        "optional permissions missing: list events, watch events (job logs will not show why a pod waits)"
    )
    assert permissions["evidence"][-1] == (
        "the account may also list, get, create, delete, update configmaps; "
        "list, get, create, delete, update pods/attach; create pods/exec; update secrets: "
        "more than kuberunner uses"
    )
