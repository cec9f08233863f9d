"""Conformance of the pipeline model with the gitlab-ci-local corpus.

Every corpus invocation in ``preview`` or ``list`` mode, and every invocation that
gitlab-ci-local rejected with a fatal error, is replayed against
:mod:`kuberunner.pipeline`: previews are deep-compared, list rows compared field by
field, and rejected configurations must raise :class:`PipelineError` naming the same
identifiers. Each case is prepared exactly as the corpus README says (copy, git init
on ``master``, commit, ``origin`` remote, ``origin/HEAD`` -> ``main``).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kuberunner.pipeline import PipelineError, load_pipeline

# the corpus lives in shared/, beside the repository checkout (locally and in CI)
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "gitlab-ci-local"
CASES = CORPUS / "cases"


def _invocations() -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for case_dir in sorted(p for p in CASES.iterdir() if p.is_dir()):
        entries = json.loads((case_dir / "expected.json").read_text())
        for index, entry in enumerate(entries):
            if entry["mode"] in ("preview", "list") or "error" in entry:
                out.append((case_dir.name, index, entry))
    return out


INVOCATIONS = _invocations() if CASES.is_dir() else []

# Identifiers (job names, keys, values, file names) that our error message must contain,
# taken from gitlab-ci-local's message for the same configuration.
ERROR_IDENTIFIERS: dict[tuple[str, int], list[str]] = {
    ("cache-key-invalid-files", 0): ["cache:key:files", "Got 3"],
    ("cache-key-invalid-files", 1): ["cache:key:files", "Got 0"],
    ("cache-paths-not-array", 0): ["test-job", "cache[0].paths must be array"],
    ("dependencies-not-found", 0): ["dependencies", "invalid", "test-job"],
    ("include-inputs", 1): [
        ".gitlab-ci-input-template.yml",
        "`required_inputs` input",
        "required value has not been provided",
    ],
    ("include-inputs", 2): [".gitlab-ci-input-template.yml", "unknown interpolation key: `foo`"],
    ("include-inputs", 3): [".gitlab-ci-input-template.yml", "unknown interpolation key: `foo`"],
    ("include-inputs", 7): ["`array_input` input", "not a array"],
    ("include-inputs", 8): ["`string_input` input", "not a string"],
    ("include-inputs", 9): ["`number_input` input", "not a number"],
    ("include-inputs", 13): ["`boolean_input` input", "not a boolean"],
    ("include-inputs", 14): ["unsupported_type_input", "input type unknown value: foo"],
    ("include-inputs", 15): ["`options_input` input", "`fizz`", "allowed options"],
    ("include-inputs", 17): ["`options_input` input", "`fizz`", "allowed options"],
    ("include-inputs", 18): ["too many functions in interpolation block"],
    ("include-inputs", 20): ["`version` input", "`invalid-version`", r"^v\d+\.\d+\.\d+$"],
    ("include-inputs", 22): ["`version` input", "`^[unclosed`", "not a valid regular expression"],
    ("include-invalid-local", 0): [".gitlab-ci-invalid.yml"],
    ("include-local", 3): ["`../include-local/.gitlab-ci.yml`", "include:local", "directory traversal"],
    ("include-local", 4): ["`./.gitlab-ci.yml`", "include:local", "relative path"],
    ("invalid-stages", 0): ["stages", "must be an array"],
    ("manual", 7): ["pre-job", "when:manual", "test-job", "--manual"],
    ("needs-contains-dependencies", 0): [
        "test-job",
        "'one,three'",
        "doesn't fully contain dependencies",
        "'one,two'",
    ],
    ("needs-empty-entry", 0): ["dev-job", "needs", "entries cannot be empty"],
    ("needs-invalid-stage", 0): ["needs: [test-job] for build-job is in a future stage"],
    ("needs-not-array", 0): ["dev-job needs: must be an array"],
    ("needs-parallel-matrix-error", 0): [
        "test-job uses needs.parallel.matrix targeting build-job, but build-job has no parallel:matrix"
    ],
    ("needs-parallel-matrix-error", 1): [
        "test-plain-parallel uses needs.parallel.matrix targeting build-int, "
        "but build-int has no parallel:matrix"
    ],
    ("needs-parallel-matrix-error", 2): [
        "test-zero-match needs.parallel.matrix selector for build-foo matched zero"
    ],
    ("needs-parallel-matrix-expressions-non-parallel-consumer", 0): [
        "linux:test uses $[[ matrix.X ]] expressions in needs.parallel.matrix but is not parallelized"
    ],
    ("needs-parallel-matrix-expressions-unknown-identifier", 0): [
        "linux:test: [aws]",
        "'NOPE' does not exist in matrix configuration",
    ],
    ("needs-unspecified-job", 0): ["needs: [invalid] for test-job could not be found"],
    ("no-script", 0): ["test-job must have script specified"],
    ("plain", 2): ["notfound", "could not be found"],
    ("reference", 5): [
        "test.script config should be string or a nested array of strings up to 10 level deep"
    ],
    ("rules-blank", 0): ["job", "rules: config can't be blank"],
    ("schema-validation", 0): ["data", "test", "script", "manual2", "junit"],
    ("schema-validation", 2): ["variables", "error1", "error2", "error3", "error4"],
    ("schema-validation", 3): ["variables", "error1", "error2", "error3", "error4", "error5"],
    ("schema-validation", 4): ["variables", "error1", "error2", "error3", "error4", "error5"],
    ("script-blank", 0): ["test-job has empty script"],
    ("self-dependency", 0): ["circular dependencies", "self-dependency", "job"],
    ("when", 0): ["jobs:test-job when:never can only be used in a rules section or workflow:rules"],
}

# Invocations where we deliberately differ from gitlab-ci-local, keyed by (case, index),
# with the reason and the exact differences (JSON paths) that must still be there.
KNOWN_DIFFERENCES: dict[tuple[str, int], tuple[str, list[str]]] = {
    # GitLab documents `interruptible` as a `default:` keyword that every job inherits;
    # gitlab-ci-local's preview merges only image/services/cache/artifacts/scripts from
    # `default:`, so it leaves the inherited `interruptible` out.
    ("include-inputs", 11): (
        "default:interruptible is inherited by jobs (GitLab docs); gcl does not merge it",
        ["scan-website.interruptible: unexpected True"],
    ),
    ("include-inputs", 12): (
        "default:interruptible is inherited by jobs (GitLab docs); gcl does not merge it",
        ["scan-website.interruptible: unexpected False"],
    ),
}


def _git(cwd: Path, *args: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd.parent / "home"),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def prepare_case(case: str, root: Path) -> Path:
    """Copy the case and make it the git repository the corpus was recorded in."""
    work = root / "w"
    shutil.copytree(
        CASES / case, work, ignore=shutil.ignore_patterns("expected.json"), copy_function=shutil.copyfile
    )
    for dirpath, _, _ in os.walk(work):
        os.chmod(dirpath, 0o755)
    (root / "home").mkdir(exist_ok=True)
    _git(work, "init", "-q", "-b", "master")
    _git(work, "config", "user.email", "test@test.com")
    _git(work, "config", "user.name", "Testersen")
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "init")
    _git(work, "remote", "add", "origin", "git@gitlab.com:gcl/test-project.git")
    _git(work, "update-ref", "refs/remotes/origin/main", "HEAD")
    _git(work, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    return work


def _parse_argv(argv: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "file": ".gitlab-ci.yml",
        "jobs": [],
        "variables": {},
        "inputs": [],
        "manual": [],
        "needs": False,
        "stage": None,
        "unset": [],
    }
    it = iter(argv)
    for arg in it:
        if arg == "--file":
            opts["file"] = next(it)
        elif arg == "--variable":
            key, _, value = next(it).partition("=")
            opts["variables"][key] = value
        elif arg == "--input":
            opts["inputs"].append(next(it))
        elif arg == "--manual":
            opts["manual"].append(next(it))
        elif arg == "--stage":
            opts["stage"] = next(it)
        elif arg == "--unset-variable":
            opts["unset"].append(next(it))
        elif arg == "--home":
            next(it)
        elif arg == "--needs":
            opts["needs"] = True
        elif arg.startswith("--"):
            continue
        else:
            opts["jobs"].append(arg)
    return opts


def _diff(expected: Any, actual: Any, path: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[str] = []
        for key in expected:
            sub = f"{path}.{key}" if path else str(key)
            if key not in actual:
                out.append(f"{sub}: missing")
            else:
                out.extend(_diff(expected[key], actual[key], sub))
        for key in actual:
            if key not in expected:
                sub = f"{path}.{key}" if path else str(key)
                out.append(f"{sub}: unexpected {actual[key]!r}")
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in _diff(e, a, f"{path}[{i}]")
        ]
    if expected != actual:
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []


@functools.cache
def outcome(case: str, index: int) -> tuple[bool, tuple[str, ...]]:
    """Replay one invocation: (agrees, differences or error details)."""
    entry = json.loads((CASES / case / "expected.json").read_text())[index]
    opts = _parse_argv(entry["argv"])
    with tempfile.TemporaryDirectory() as tmp:
        work = prepare_case(case, Path(tmp))
        project = work / entry.get("cwd", ".")
        inputs_file = project / ".gitlab-ci-local-inputs.yml"
        try:
            pipeline = load_pipeline(
                project,
                file=opts["file"],
                variables=opts["variables"],
                unset_variables=opts["unset"],
                inputs=opts["inputs"],
                inputs_file=inputs_file if inputs_file.is_file() else None,
            )
            if entry["mode"] == "run":
                pipeline.select(
                    opts["jobs"], with_needs=opts["needs"], manual=opts["manual"], stage=opts["stage"]
                )
        except PipelineError as exc:
            if "error" not in entry:
                return False, (f"unexpected error: {exc}",)
            missing = [i for i in ERROR_IDENTIFIERS[(case, index)] if i not in str(exc)]
            return not missing, tuple(f"missing identifier {m!r} in: {exc}" for m in missing)
        if "error" in entry:
            return False, ("no error raised",)
        if entry["mode"] == "preview":
            return _agree(_diff(entry["preview"], pipeline.preview()))
        if entry["mode"] == "list":
            return _agree(_diff(entry["list"], pipeline.list_rows()))
        return True, ()


def _agree(diffs: list[str]) -> tuple[bool, tuple[str, ...]]:
    return not diffs, tuple(diffs)


def _ids() -> Iterator[str]:
    for case, index, entry in INVOCATIONS:
        yield f"{case}[{index}]-{entry['mode']}{'-error' if 'error' in entry else ''}"


@pytest.mark.parametrize(("case", "index", "entry"), INVOCATIONS, ids=list(_ids()))
def test_invocation(case: str, index: int, entry: dict[str, Any]) -> None:
    agrees, details = outcome(case, index)
    if (case, index) in KNOWN_DIFFERENCES:
        reason, signature = KNOWN_DIFFERENCES[(case, index)]
        assert not agrees, f"known difference disappeared ({reason}): update KNOWN_DIFFERENCES"
        assert list(details) == signature, f"known difference changed ({reason}): {details}"
        return
    assert agrees, "\n".join(details)


def test_error_identifiers_come_from_the_corpus() -> None:
    """Every identifier we require is in gitlab-ci-local's own message for that case."""
    errors = {(c, i): e for c, i, e in INVOCATIONS if "error" in e}
    assert set(ERROR_IDENTIFIERS) == set(errors)
    for key, identifiers in ERROR_IDENTIFIERS.items():
        text = "\n".join(errors[key]["error_lines"])
        for ident in identifiers:
            assert ident in text, f"{key}: {ident!r} not in {text!r}"


def test_agreement_rate() -> None:
    """At least 95 % of the preview/list/error invocations agree with gitlab-ci-local."""
    results = {(c, i): outcome(c, i)[0] for c, i, _ in INVOCATIONS}
    agreed = sum(results.values())
    rate = agreed / len(results)
    print(
        f"\npipeline conformance: {agreed}/{len(results)} invocations agree ({rate:.1%}); "
        f"known differences: {sorted(KNOWN_DIFFERENCES)}"
    )
    assert len(results) == 77
    assert rate >= 0.95, f"agreement {rate:.1%}: {[k for k, ok in results.items() if not ok]}"
