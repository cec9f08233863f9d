"""Variable expansion and GitLab's predefined variables for a local pipeline."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from kuberunner.pipeline.gitdata import GitData, slugify

__all__ = [
    "environment_slug",
    "environment_tier",
    "expand",
    "expand_all",
    "job_predefined_variables",
    "predefined_variables",
]

_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand(
    text: str, lookup: Mapping[str, str] | Callable[[str], str | None], *, keep_unknown: bool = False
) -> str:
    """Replace ``$VAR``/``${VAR}`` (``$$`` is a literal ``$``); unknown names become ``""``
    unless ``keep_unknown``."""
    get = lookup.get if isinstance(lookup, Mapping) else lookup

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$$" if keep_unknown else "$"
        name = m.group(1) or m.group(2)
        value = get(name)
        if value is None:
            return m.group(0) if keep_unknown else ""
        return value

    return _REF.sub(sub, text)


def expand_all(values: Mapping[str, str], raw: frozenset[str] = frozenset()) -> dict[str, str]:
    """Expand variables that refer to other variables (as the runner does), leaving ``raw`` ones alone.

    A variable never expands itself (``PATH: $PATH:/x`` uses nothing here), and
    references to unknown variables become empty. ``$$`` stays ``$`` once, at the end.
    """
    resolved: dict[str, str] = {}
    visiting: set[str] = set()

    def resolve(name: str) -> str | None:
        if name in resolved:
            return resolved[name]
        if name not in values:
            return None
        if name in raw:
            resolved[name] = values[name]
            return values[name]
        if name in visiting:
            return ""
        visiting.add(name)
        value = expand(
            values[name], lambda other: None if other == name else resolve(other), keep_unknown=False
        )
        visiting.discard(name)
        resolved[name] = value
        return value

    for key in values:
        resolve(key)
    return resolved


def environment_slug(name: str) -> str:
    """GitLab's ``CI_ENVIRONMENT_SLUG``: DNS-safe, at most 24 characters, hashed suffix when shortened."""
    slug = re.sub(r"[^a-z0-9]", "-", name.lower())
    if not slug or not ("a" <= slug[0] <= "z"):
        slug = "env-" + slug
    slug = re.sub(r"-+", "-", slug)
    if len(slug) > 24 or slug != name:
        digest = int(hashlib.sha256(name.encode()).hexdigest(), 16)
        suffix = _base36(digest)[-6:]
        slug = slug[:17]
        if not slug.endswith("-"):
            slug += "-"
        return slug + suffix
    return slug.rstrip("-")


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def environment_tier(name: str) -> str:
    """The deployment tier GitLab guesses from an environment's name."""
    lowered = name.lower()
    patterns = [
        ("development", r"(dev|review|trunk)"),
        ("testing", r"(test|tst|int|ac(ce|)pt|qa|qc|control|quality)"),
        ("staging", r"(st(a|)g|mod(e|)l|pre|demo|non)"),
        ("production", r"(pr(o|)d|live)"),
    ]
    for tier, pattern in patterns:
        if re.search(pattern, lowered):
            return tier
    return "other"


def predefined_variables(
    git: GitData,
    *,
    project_dir: Path,
    config_path: str,
    pipeline_id: int,
) -> dict[str, str]:
    """The pipeline-level predefined variables GitLab would set, computed from the local repository."""
    host = git.server_host
    port = git.server_port
    server_url = f"https://{host}" if port in ("443", "") else f"https://{host}:{port}"
    project_url = f"{server_url}/{git.project_path}"
    login = git.user_email.split("@", 1)[0] if git.user_email else "local"
    description = git.message.split("\n", 1)[1].lstrip("\n") if "\n" in git.message else ""
    variables = {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_SERVER": "yes",
        "CI_SERVER_NAME": "GitLab",
        "CI_SERVER_HOST": host,
        "CI_SERVER_FQDN": host if port in ("443", "") else f"{host}:{port}",
        "CI_SERVER_PORT": port or "443",
        "CI_SERVER_PROTOCOL": "https",
        "CI_SERVER_URL": server_url,
        "CI_API_V4_URL": f"{server_url}/api/v4",
        "CI_PROJECT_ID": "1",
        "CI_PROJECT_NAME": git.project_name,
        "CI_PROJECT_TITLE": git.project_name,
        "CI_PROJECT_PATH": git.project_path,
        "CI_PROJECT_PATH_SLUG": slugify(git.project_path),
        "CI_PROJECT_NAMESPACE": git.project_namespace,
        "CI_PROJECT_ROOT_NAMESPACE": git.project_path.split("/", 1)[0],
        "CI_PROJECT_URL": project_url,
        "CI_PROJECT_VISIBILITY": "private",
        "CI_PROJECT_DIR": str(project_dir),
        "CI_REPOSITORY_URL": f"{project_url}.git",
        "CI_CONFIG_PATH": config_path,
        "CI_DEFAULT_BRANCH": git.default_branch,
        "CI_PIPELINE_ID": str(pipeline_id),
        "CI_PIPELINE_IID": str(pipeline_id),
        "CI_PIPELINE_SOURCE": "push",
        "CI_PIPELINE_URL": f"{project_url}/-/pipelines/{pipeline_id}",
        "GITLAB_USER_LOGIN": login,
        "GITLAB_USER_EMAIL": git.user_email,
        "GITLAB_USER_NAME": git.user_name,
        "GITLAB_USER_ID": "1",
    }
    if not git.has_commit:
        return variables  # outside a git repository: no commit, branch or tag to describe
    variables.update(
        {
            "CI_COMMIT_SHA": git.sha,
            "CI_COMMIT_SHORT_SHA": git.sha[:8],
            "CI_COMMIT_BEFORE_SHA": git.before_sha,
            "CI_COMMIT_REF_NAME": git.ref,
            "CI_COMMIT_REF_SLUG": slugify(git.ref),
            "CI_COMMIT_REF_PROTECTED": "false",
            "CI_COMMIT_TITLE": git.title,
            "CI_COMMIT_MESSAGE": git.message,
            "CI_COMMIT_DESCRIPTION": description,
            "CI_COMMIT_TIMESTAMP": git.timestamp,
            "CI_COMMIT_AUTHOR": git.author,
        }
    )
    if git.is_tag:
        variables["CI_COMMIT_TAG"] = git.ref
    else:
        variables["CI_COMMIT_BRANCH"] = git.ref
    return variables


def job_predefined_variables(
    *,
    name: str,
    stage: str,
    node_index: int | None,
    node_total: int | None,
    manual: bool,
) -> dict[str, str]:
    """Predefined variables that depend on the job (``CI_JOB_*``, ``CI_NODE_*``)."""
    variables = {
        "CI_JOB_NAME": name,
        "CI_JOB_NAME_SLUG": slugify(name),
        "CI_JOB_STAGE": stage,
    }
    if node_index is not None and node_total is not None:
        variables["CI_NODE_INDEX"] = str(node_index)
        variables["CI_NODE_TOTAL"] = str(node_total)
    if manual:
        variables["CI_JOB_MANUAL"] = "true"
    return variables
