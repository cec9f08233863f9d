"""Job variables: gitlab-runner's ordered list, its ``$VAR`` expansion, and the predefined set.

A job sees one ordered list of variables. As in gitlab-runner, a key may occur
several times and the **last** entry wins. :func:`build_variables` assembles
the list in gitlab-runner's order (``common/build.go``, ``GetAllVariables``),
so later groups override earlier ones:

1. ``CI_JOB_IMAGE`` (when the job has an image);
2. ``CI_RUNNER_SHORT_TOKEN``, then the runner's ``environment = ["K=V"]``;
3. the directories and ids the runner decides: ``CI_BUILDS_DIR``,
   ``CI_PROJECT_DIR``, ``CI_CONCURRENT_ID``, ``CI_CONCURRENT_PROJECT_ID``,
   ``CI_SERVER=yes``, ``CI_JOB_STATUS=running``, ``CI_JOB_TIMEOUT``;
4. ``CI_SERVER_TLS_CA_FILE`` (a file variable) when a CA chain is configured;
5. the job's own variables from the payload (project, group, instance,
   ``.gitlab-ci.yml`` and GitLab's predefined ones);
6. ``CI_DISPOSABLE_ENVIRONMENT`` (kubernetes) or ``CI_SHARED_ENVIRONMENT`` (shell);
7. ``CI_RUNNER_VERSION``, ``CI_RUNNER_REVISION``, ``CI_RUNNER_EXECUTABLE_ARCH``;
8. ``extra`` (e.g. what ``kuberunner exec --env`` adds);
9. ``RUNNER_TEMP_PROJECT_DIR`` (where file variables are written).

So the runner's ``environment`` overrides nothing the runner computes itself
(a runner setting cannot move ``CI_PROJECT_DIR`` away from where the sources
really are), and the job's variables override the runner's ``environment``.

Expansion follows gitlab-runner's ``os.Expand``: ``$VAR`` and ``${VAR}`` are
replaced, an unknown variable becomes empty, ``$$`` becomes ``$``, a reference
to a file variable becomes the path of its file, and ``raw`` variables are
never expanded. Unlike gitlab-runner's single pass, references are resolved
recursively (``A=$B``, ``B=$C`` gives ``A`` the value of ``C``); a variable
that mentions its own key refers to the previous definition of that key, and a
cycle expands to empty.
"""

from __future__ import annotations

import platform
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from kuberunner.config.schema import RunnerConfig
    from kuberunner.job import JobPayload, JobVariable

__all__ = [
    "Variable",
    "Variables",
    "build_variables",
    "executable_arch",
    "expand",
    "is_shell_name",
    "parse_bool",
]

_SPECIAL = frozenset("*#$@!?-0123456789")
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Variable:
    """One variable as the job sees it. The value never appears in ``repr`` (it may be a secret)."""

    key: str
    value: str = field(default="", repr=False)
    public: bool = False
    masked: bool = False
    file: bool = False
    raw: bool = False
    internal: bool = False

    @classmethod
    def of(cls, v: Variable | JobVariable) -> Variable:
        if isinstance(v, Variable):
            return v
        return cls(v.key, v.value, public=v.public, masked=v.masked, file=v.file, raw=v.raw)


def is_shell_name(key: str) -> bool:
    """Whether ``key`` can be a POSIX shell variable (only those can be exported)."""
    return _SHELL_NAME.fullmatch(key) is not None


def parse_bool(value: str) -> bool | None:
    """Go's ``strconv.ParseBool`` as gitlab-runner uses it; None when it is not a boolean."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _shell_name(s: str, start: int) -> tuple[str, int]:
    """Go's ``os.getShellName`` on ``s[start:]``: (name, characters consumed)."""
    c = s[start]
    if c == "{":
        if len(s) - start > 2 and s[start + 1] in _SPECIAL and s[start + 2] == "}":
            return s[start + 1], 3
        end = s.find("}", start + 1)
        if end == -1:
            return "", 1  # bad syntax: eat "${"
        if end == start + 1:
            return "", 2  # bad syntax: eat "${}"
        return s[start + 1 : end], end - start + 1
    if c in _SPECIAL:
        return c, 1
    i = start
    while i < len(s) and (s[i] == "_" or (s[i].isascii() and s[i].isalnum())):
        i += 1
    return s[start:i], i - start


def expand(text: str, lookup: Callable[[str], str]) -> str:
    """Go's ``os.Expand``: replace ``$name``/``${name}`` by ``lookup(name)``."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0  # start of the text not copied yet
    j = 0
    n = len(text)
    while j < n:
        if text[j] == "$" and j + 1 < n:
            out.append(text[i:j])
            name, width = _shell_name(text, j + 1)
            if name:
                out.append(lookup(name))
            elif width == 0:
                out.append("$")  # "$" not followed by a name stays
            j += width
            i = j + 1
        j += 1
    out.append(text[i:])
    return "".join(out)


class Variables(Sequence[Variable]):
    """An ordered, immutable list of variables where the last entry of a key wins.

    ``file_dir`` is where file variables are written in the job's environment:
    :meth:`get` and expansion give a file variable's path, not its content.
    """

    __slots__ = ("_cache", "_file_dir", "_items", "_last")

    def __init__(self, items: Iterable[Variable | JobVariable] = (), *, file_dir: str = "") -> None:
        self._items: tuple[Variable, ...] = tuple(Variable.of(v) for v in items)
        self._file_dir = file_dir
        self._last: dict[str, int] = {v.key: i for i, v in enumerate(self._items)}
        self._cache: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"Variables({[v.key for v in self._items]!r})"

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Variable: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Variable]: ...
    def __getitem__(self, index: int | slice) -> Variable | Sequence[Variable]:
        return self._items[index]

    def __iter__(self) -> Iterator[Variable]:
        return iter(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._last

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Variables):
            return NotImplemented
        return self._items == other._items and self._file_dir == other._file_dir

    def __hash__(self) -> int:
        return hash((self._items, self._file_dir))

    @property
    def file_dir(self) -> str:
        return self._file_dir

    def with_variables(self, *items: Variable | JobVariable) -> Variables:
        """A copy with ``items`` appended (so they win)."""
        return Variables([*self._items, *items], file_dir=self._file_dir)

    def with_file_dir(self, file_dir: str) -> Variables:
        return Variables(self._items, file_dir=file_dir)

    def entry(self, key: str) -> Variable | None:
        """The winning entry of ``key``."""
        index = self._last.get(key)
        return None if index is None else self._items[index]

    def file_path(self, key: str) -> str:
        """Where the file variable ``key`` is written."""
        return posixpath.join(self._file_dir, key)

    def value(self, key: str) -> str:
        """The winning value of ``key``, expanded (the content, also for a file variable); "" if unset."""
        index = self._last.get(key)
        return "" if index is None else self._value_at(index)

    def get(self, key: str) -> str:
        """Like :meth:`value`, but a file variable gives its file's path (gitlab-runner's ``Get``)."""
        entry = self.entry(key)
        if entry is not None and entry.file:
            return self.file_path(key)
        return self.value(key)

    def flag(self, key: str, default: bool = False) -> bool:
        """gitlab-runner's ``Bool``: true/false words, or a number (only 1 is true); else ``default``."""
        value = self.value(key).strip()
        parsed = parse_bool(value.lower()) if value else None
        if parsed is not None:
            return parsed
        if value.lstrip("+-").isdigit():
            return int(value) == 1
        return default

    def expand(self, text: str) -> str:
        """Expand ``$VAR``/``${VAR}`` in ``text`` (a cache key, an artifact path...)."""
        walk = _Walk()
        return expand(text, lambda name: self._lookup(name, len(self._items), (), walk))

    def resolved(self) -> list[Variable]:
        """Every entry with its value expanded (raw ones untouched): what the job's shell exports."""
        return [replace(v, value=self._value_at(i)) for i, v in enumerate(self._items)]

    def masked_values(self) -> list[str]:
        """Values of masked variables, as they reach the job (expanded), each once."""
        seen: dict[str, None] = {}
        for i, v in enumerate(self._items):
            if v.masked:
                for value in (v.value, self._value_at(i)):
                    if value:
                        seen.setdefault(value)
        return list(seen)

    def _value_at(self, index: int) -> str:
        return self._resolve(index, (), _Walk())

    def _lookup(self, name: str, before: int, stack: tuple[int, ...], walk: _Walk) -> str:
        if name == "$":
            return "$"
        if name in _SPECIAL:
            return ""
        index = self._last.get(name)
        if index is not None and index >= before:
            index = next((i for i in range(before - 1, -1, -1) if self._items[i].key == name), None)
        if index is None:
            return ""
        if self._items[index].file:
            return self.file_path(name)
        return self._resolve(index, stack, walk)

    def _resolve(self, index: int, stack: tuple[int, ...], walk: _Walk) -> str:
        item = self._items[index]
        if item.raw or "$" not in item.value:
            return item.value
        walk.steps += 1
        if walk.steps > _MAX_STEPS or walk.size > _MAX_SIZE:
            walk.cycle = True  # too much work: do not cache what was cut short
            return ""
        cached = self._cache.get(index)
        if cached is not None:
            walk.size += len(cached)
            return cached
        if index in stack:
            walk.cycle = True
            return ""  # a cycle: A=$B, B=$A
        inner = (*stack, index)
        cycle_before, walk.cycle = walk.cycle, False

        def lookup(name: str) -> str:
            # A variable naming itself means the definition before it (PATH=$PATH:/x).
            before = index if name == item.key else len(self._items)
            return self._lookup(name, before, inner, walk)

        value = expand(item.value, lookup)
        walk.size += len(value)
        if not walk.cycle:
            self._cache[index] = value  # independent of where the resolution started
        walk.cycle = walk.cycle or cycle_before
        return value


# Expanding is bounded so that variables built to blow up (A=$B$B, B=$C$C, ...)
# cannot stall the runner: past these, further references expand to empty.
_MAX_STEPS = 10_000
_MAX_SIZE = 16 * 1024 * 1024


class _Walk:
    """Bookkeeping of one expansion: work done, and whether a cycle was cut."""

    __slots__ = ("cycle", "size", "steps")

    def __init__(self) -> None:
        self.cycle = False
        self.steps = 0
        self.size = 0


def executable_arch() -> str:
    """``CI_RUNNER_EXECUTABLE_ARCH`` as gitlab-runner spells it (``linux/amd64``)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}.get(
        machine, machine
    )
    return f"{platform.system().lower()}/{arch}"


def _internal(key: str, value: str, **kw: Any) -> Variable:
    return Variable(key, value, public=True, internal=True, **kw)


def _environment(entries: Iterable[str]) -> list[Variable]:
    out = []
    for entry in entries:
        key, sep, value = entry.partition("=")
        if sep and key:
            out.append(Variable(key, value, internal=True))
    return out


def build_variables(
    job: JobPayload,
    runner: RunnerConfig,
    *,
    builds_dir: str,
    project_dir: str,
    concurrent_id: int,
    concurrent_project_id: int | None = None,
    runner_version: str,
    runner_revision: str = "",
    executor: str = "",
    tls_ca_chain: str | None = None,
    file_dir: str = "",
    arch: str | None = None,
    extra: Iterable[Variable | JobVariable] = (),
) -> Variables:
    """All variables of a job, in gitlab-runner's order (see the module docstring).

    ``tls_ca_chain`` is the PEM text of the CA that signs GitLab's certificate
    (it becomes the file variable ``CI_SERVER_TLS_CA_FILE``); ``file_dir`` is
    where the job's shell writes file variables.
    """
    items: list[Variable] = []
    if job.image is not None and job.image.name:
        items.append(_internal("CI_JOB_IMAGE", job.image.name))
    items.append(_internal("CI_RUNNER_SHORT_TOKEN", runner.short_token))
    items += _environment(runner.environment)
    items += [
        _internal("CI_BUILDS_DIR", builds_dir),
        _internal("CI_PROJECT_DIR", project_dir),
        _internal("CI_CONCURRENT_ID", str(concurrent_id)),
        _internal(
            "CI_CONCURRENT_PROJECT_ID",
            str(concurrent_id if concurrent_project_id is None else concurrent_project_id),
        ),
        _internal("CI_SERVER", "yes"),
        _internal("CI_JOB_STATUS", "running"),
        _internal("CI_JOB_TIMEOUT", str(job.runner_info.timeout)),
    ]
    if tls_ca_chain:
        items.append(_internal("CI_SERVER_TLS_CA_FILE", tls_ca_chain, file=True))
    items += [Variable.of(v) for v in job.variables]
    if executor == "kubernetes":
        items.append(_internal("CI_DISPOSABLE_ENVIRONMENT", "true"))
    else:
        items.append(_internal("CI_SHARED_ENVIRONMENT", "true"))
    items += [
        _internal("CI_RUNNER_VERSION", runner_version),
        _internal("CI_RUNNER_REVISION", runner_revision),
        _internal("CI_RUNNER_EXECUTABLE_ARCH", arch or executable_arch()),
    ]
    items += [Variable.of(v) for v in extra]
    if file_dir:
        items.append(_internal("RUNNER_TEMP_PROJECT_DIR", file_dir))
    return Variables(items, file_dir=file_dir)
