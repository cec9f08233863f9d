"""List TODO notes; exit 3 when there are any (the pipeline allows that exit code to fail)."""

from __future__ import annotations

import sys
from pathlib import Path


def main(roots: list[str]) -> int:
    found = [
        f"{path}:{number}: {line.strip()}"
        for root in roots
        for path in sorted(Path(root).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "TODO" + ":" in line
    ]
    for item in found:
        print(item)
    print(f"todo-check: {len(found)} open TODO(s)")
    return 3 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
