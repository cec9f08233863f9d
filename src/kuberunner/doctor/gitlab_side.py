"""The GitLab side: ``url`` reachable, its certificate trusted, the runner token valid."""

from __future__ import annotations

from kuberunner.config.schema import RunnerConfig
from kuberunner.doctor import tls
from kuberunner.doctor.model import CheckResult, Fix
from kuberunner.gitlab.client import GitLabClient, RetryPolicy
from kuberunner.gitlab.errors import GitLabError, GitLabUnreachable

__all__ = ["check_gitlab"]

_TITLE = "GitLab"


async def _untrusted(runner: RunnerConfig, message: str) -> CheckResult:
    evidence = [message]
    try:
        info = tls.describe_certificate(await tls.fetch_server_certificate(runner.url))
        evidence.extend(info.lines())
    except (OSError, ValueError) as exc:
        evidence.append(f"could not fetch the certificate to describe it: {exc}")
    return CheckResult(
        "gitlab",
        _TITLE,
        "fail",
        f"GitLab's certificate ({runner.url}) is not trusted",
        tuple(evidence),
        (
            Fix(
                "toml",
                '[[runners]]\n  tls-ca-file = "/etc/gitlab-runner/certs/gitlab-ca.crt"',
                note="point tls-ca-file at the CA that signed GitLab's certificate:",
            ),
        ),
    )


async def check_gitlab(runner: RunnerConfig, *, timeout: float = 15.0) -> CheckResult:
    """``POST /runners/verify`` with the runner's token, once: doctor reports, it does not retry."""
    if not runner.url:
        return CheckResult(
            "gitlab",
            _TITLE,
            "fail",
            "[[runners]] has no url",
            (),
            (Fix("toml", '[[runners]]\n  url = "https://gitlab.example.com/"'),),
        )
    if not runner.token:
        return CheckResult(
            "gitlab",
            _TITLE,
            "fail",
            "[[runners]] has no token",
            (),
            (Fix("kubectl", "kuberunner register", note="register the runner (writes url and token):"),),
        )
    client = GitLabClient(
        runner.url,
        tls_ca_file=runner.tls_ca_file or None,
        tls_cert_file=runner.tls_cert_file or None,
        tls_key_file=runner.tls_key_file or None,
        timeout=timeout,
        retry=RetryPolicy(attempts=1),
    )
    try:
        found = await client.verify_runner(runner.token)
    except GitLabUnreachable as exc:
        if "certificate is not trusted" in str(exc) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return await _untrusted(runner, str(exc))
        return CheckResult(
            "gitlab",
            _TITLE,
            "fail",
            f"cannot reach GitLab at {runner.url}",
            (str(exc),),
            (Fix("text", "check url in [[runners]] and that this machine resolves and reaches it"),),
        )
    except GitLabError as exc:
        return CheckResult("gitlab", _TITLE, "fail", f"GitLab answered an error: {exc}")
    finally:
        await client.aclose()
    if found is None:
        return CheckResult(
            "gitlab",
            _TITLE,
            "fail",
            f"GitLab at {runner.url} does not know the runner token (deleted runner, or another instance)",
            (f"token {runner.short_token}… rejected by POST /runners/verify",),
            (Fix("kubectl", "kuberunner register", note="register the runner again (new token):"),),
        )
    runner_id = f" as runner #{found.id}" if found.id else ""
    return CheckResult("gitlab", _TITLE, "pass", f"{runner.url} knows the runner token{runner_id}")
