"""A tiny linter: no tabs, no trailing blanks, lines of at most 110 characters."""

from __future__ import annotations

import sys
from pathlib import Path


def main(roots: list[str]) -> int:
    problems = 0
    for root in roots:
        for path in sorted(Path(root).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                why = (
                    "tab"
                    if "\t" in line
                    else "trailing blank"
                    if line != line.rstrip()
                    else "longer than 110"
                    if len(line) > 110
                    else None
                )
                if why:
                    print(f"{path}:{number}: {why}")
                    problems += 1
    print(f"lint: {problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
