"""What one doctor check found: a status, the evidence, and a fix to paste."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["STATUSES", "CheckResult", "Fix", "FixKind", "RunnerReport", "Status", "skipped"]

Status = Literal["pass", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "skip")
FixKind = Literal["toml", "kubectl", "yaml", "text"]


@dataclass(frozen=True)
class Fix:
    """Something the user can paste: ``toml`` into config.toml, ``kubectl`` into a shell,
    ``yaml`` into ``kubectl apply -f -``; ``text`` when no single paste fixes it."""

    kind: FixKind
    text: str
    note: str = ""  # one line before the paste: what it does

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "note": self.note}


@dataclass(frozen=True)
class CheckResult:
    """One line of the report. ``id`` is stable (for JSON consumers and tests)."""

    id: str
    title: str
    status: Status
    summary: str
    evidence: tuple[str, ...] = ()
    fixes: tuple[Fix, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "fixes": [f.to_dict() for f in self.fixes],
        }


def skipped(check_id: str, title: str, needs: str) -> CheckResult:
    """A check that did not run because ``needs`` failed first (no noise after a root cause)."""
    return CheckResult(check_id, title, "skip", f"skipped (needs {needs})")


@dataclass
class RunnerReport:
    """Every check for one ``[[runners]]`` entry, in the order they ran."""

    name: str
    executor: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    def add(self, result: CheckResult) -> CheckResult:
        self.checks.append(result)
        return result

    def get(self, check_id: str) -> CheckResult | None:
        for check in self.checks:
            if check.id == check_id:
                return check
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "executor": self.executor,
            "ok": self.ok,
            "checks": [c.to_dict() for c in self.checks],
        }
