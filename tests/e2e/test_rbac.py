"""`kuberunner rbac`: the printed manifests validate; applied with an admin kubeconfig, the account works.

"Works" means what a user would check next: `kuberunner doctor` (with the
snippet rbac printed or wrote) passes, with --probe starting a real pod.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import tomlkit
from ruamel.yaml import YAML
from tests.doubles.gitlab import BareRepo, GitLabDouble
from tests.doubles.kube import KubeDouble, Timings

from kuberunner.build import Build
from kuberunner.config.schema import RunnerConfig
from kuberunner.executors.kubernetes import KubernetesExecutor
from kuberunner.gitlab.client import GitLabClient, runner_info
from kuberunner.kube.manage import runner_permissions
from kuberunner.kube.rbac import rules_for
from kuberunner.runner.job import run_gitlab_job

CONFIG = """\
# the seed operator's file, before kuberunner rbac
concurrent = 1

[[runners]]
  name = "k8s-runner"   # keep this comment
  url = "{url}"
  token = "{token}"
  executor = "kubernetes"
  [runners.kubernetes]
    # k8s 地址 (will be replaced)
    bearer_token = "先随便写一个"
    poll_timeout = 30
"""


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeDouble]:
    with KubeDouble(state_dir=tmp_path / "kube", timings=Timings(grace_period_cap=1)) as api:
        yield api
        assert api.errors == []


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def cli(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "CONFIG_FILE")
    }
    return subprocess.run(
        [sys.executable, "-m", "kuberunner", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "HOME": str(home), **env},
    )


def seed_config(path: Path, gitlab: GitLabDouble) -> Path:
    path.write_text(CONFIG.format(url=gitlab.url, token=gitlab.create_runner().token))
    return path


def test_printed_manifests_are_valid_and_exact(tmp_path: Path, home: Path) -> None:
    proc = cli(
        "rbac", "-c", str(tmp_path / "none.toml"), "--namespace", "ci", "--service-account", "kr", home=home
    )
    assert proc.returncode == 0, proc.stderr
    documents = list(YAML(typ="safe", pure=True).load_all(proc.stdout))
    kinds = [d["kind"] for d in documents]
    assert kinds == ["Namespace", "ServiceAccount", "Role", "RoleBinding", "Secret"]
    for document in documents:
        for version in ("1.30", kubernetes_validate.latest_version()):
            kubernetes_validate.validate(document, version, strict=True)
    by_kind = {d["kind"]: d for d in documents}
    # exactly the runner's calls: no more verbs, no fewer
    assert by_kind["Role"]["rules"] == rules_for(runner_permissions())
    assert by_kind["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": "kr", "namespace": "ci"}]
    assert by_kind["RoleBinding"]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "kr",
    }
    assert by_kind["Secret"]["type"] == "kubernetes.io/service-account-token"
    assert by_kind["Secret"]["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "kr"}
    # each rule says which call needs it
    assert "# create: each job runs as a pod" in proc.stdout


def test_names_come_from_config_toml(tmp_path: Path, home: Path, gitlab: GitLabDouble) -> None:
    config = seed_config(tmp_path / "config.toml", gitlab)
    text = config.read_text().replace(
        "    poll_timeout = 30\n",
        '    poll_timeout = 30\n    namespace = "gitlab"\n    service_account = "gitlab-runner"\n',
    )
    config.write_text(text)
    proc = cli("rbac", "-c", str(config), home=home)
    assert proc.returncode == 0, proc.stderr
    role = next(d for d in YAML(typ="safe", pure=True).load_all(proc.stdout) if d["kind"] == "Role")
    assert role["metadata"] == {
        "name": "gitlab-runner",
        "namespace": "gitlab",
        "labels": {"app.kubernetes.io/managed-by": "kuberunner"},
    }
    assert "先随便写一个" not in proc.stdout + proc.stderr


def test_write_needs_apply(tmp_path: Path, home: Path) -> None:
    proc = cli("rbac", "-c", str(tmp_path / "config.toml"), "--write", home=home)
    assert proc.returncode == 2
    assert "--write needs --apply" in proc.stderr


def test_apply_write_then_doctor_probe_passes(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    config = seed_config(tmp_path / "config.toml", gitlab)
    admin = kube.kubeconfig(tmp_path / "admin.kubeconfig")
    proc = cli(
        "rbac",
        "-c",
        str(config),
        "--namespace",
        "gitlab",
        "--service-account",
        "gitlab-runner",
        "--apply",
        "--write",
        "--token-timeout",
        "1",
        home=home,
        KUBECONFIG=str(admin),
    )
    assert proc.returncode == 0, proc.stderr
    assert "applied Role gitlab-runner in namespace gitlab" in proc.stderr
    assert "token: " in proc.stderr
    written = tomllib.loads(config.read_text())["runners"][0]["kubernetes"]
    token = written["bearer_token"]
    assert token != "先随便写一个" and token not in proc.stdout + proc.stderr
    ca_file = tmp_path / "kuberunner-gitlab-ca.crt"
    assert written["ca_file"] == str(ca_file) and ca_file.read_text() == Path(kube.ca_file).read_text()
    assert written["host"] == kube.host
    assert (written["namespace"], written["service_account"]) == ("gitlab", "gitlab-runner")
    assert written["automount_service_account_token"] is False
    text = config.read_text()
    assert "# the seed operator's file, before kuberunner rbac" in text and "# keep this comment" in text
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    # objects exist as printed
    roles = kube.objects("roles.rbac.authorization.k8s.io", "gitlab")
    assert [r["rules"] for r in roles] == [rules_for(runner_permissions())]
    # doctor with nothing but config.toml (no kubeconfig): everything passes, a real pod starts
    doctor = cli("doctor", "-c", str(config), "--probe", home=home)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "FAIL" not in doctor.stdout and "WARN" not in doctor.stdout, doctor.stdout
    assert "a job pod started in" in doctor.stdout
    assert token not in doctor.stdout + doctor.stderr


def test_apply_prints_a_snippet_that_works_and_apply_is_repeatable(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, kube: KubeDouble
) -> None:
    config = seed_config(tmp_path / "config.toml", gitlab)
    admin = kube.kubeconfig(tmp_path / "admin.kubeconfig")
    for _ in range(2):  # server-side apply: the second run updates in place
        proc = cli(
            "rbac", "-c", str(config), "--apply", "--token-timeout", "1", home=home, KUBECONFIG=str(admin)
        )
        assert proc.returncode == 0, proc.stderr
    snippet = tomllib.loads(proc.stdout)["runners"]["kubernetes"]
    assert set(snippet) == {
        "host",
        "ca_file",
        "bearer_token",
        "namespace",
        "service_account",
        "automount_service_account_token",
    }
    assert (snippet["namespace"], snippet["service_account"]) == ("kuberunner", "kuberunner")
    assert "keep it secret" in proc.stderr and snippet["bearer_token"] not in proc.stderr
    # paste it
    document = tomlkit.parse(config.read_text())
    table: Any = document["runners"][0]["kubernetes"]  # type: ignore[index]
    for key, value in snippet.items():
        table[key] = value
    config.write_text(tomlkit.dumps(document))
    doctor = cli("doctor", "-c", str(config), home=home)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "  PASS  permissions" in doctor.stdout and "  PASS  job pod (dry run)" in doctor.stdout


async def test_after_rbac_apply_a_job_runs(
    tmp_path: Path, home: Path, gitlab: GitLabDouble, gitlab_repo: BareRepo, kube: KubeDouble
) -> None:
    """From zero to first job: rbac --apply --write, then a real job on the Kubernetes executor."""
    config = seed_config(tmp_path / "config.toml", gitlab)
    admin = kube.kubeconfig(tmp_path / "admin.kubeconfig")
    proc = await asyncio.to_thread(
        cli,
        "rbac",
        "-c",
        str(config),
        "--apply",
        "--write",
        "--token-timeout",
        "1",
        home=home,
        KUBECONFIG=str(admin),
    )
    assert proc.returncode == 0, proc.stderr
    table = tomllib.loads(config.read_text())["runners"][0]
    # the double runs the host's programs: put this checkout's kuberunner-helper on the helper's PATH
    env = [{"name": "PATH", "value": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"}]
    patch = json.dumps(
        {"initContainers": [{"name": "init", "env": env}], "containers": [{"name": "helper", "env": env}]}
    )
    table["kubernetes"]["pod_spec"] = [{"name": "helper-path", "patch": patch, "patch_type": "strategic"}]
    runner = RunnerConfig.model_validate(table)
    job = gitlab.enqueue(script=["echo first job on kuberunner", "ls README*"])
    executor = KubernetesExecutor(system_id="s_rbace2e00001")
    async with GitLabClient(gitlab.url) as client:
        answer = await client.request_job(runner.token, system_id="s_rbace2e00001", info=runner_info())
        assert answer.job is not None
        report = await run_gitlab_job(
            client,
            answer.job,
            runner=runner,
            executor=executor,
            make_build=lambda p: Build.create(p, runner, executor_name="kubernetes"),
        )
    assert report is not None and report.outcome.state == "success", job.trace.decode(errors="replace")
    assert await job.wait_finished_async() == "success"
    assert "first job on" in job.trace.decode()
    assert "Using Kubernetes namespace: kuberunner" in job.trace.decode()
