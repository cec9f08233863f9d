"""Build ``<dist>/wordfreq.pyz``: the package plus its stopword list, as one runnable file."""

from __future__ import annotations

import shutil
import sys
import tempfile
import zipapp
from pathlib import Path


def main(dist: str) -> int:
    out = Path(dist)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "app"
        shutil.copytree("src", staging)
        shutil.copy(".cache/stopwords.txt", staging / "wordfreq" / "stopwords.txt")
        target = out / "wordfreq.pyz"
        zipapp.create_archive(
            staging, target, interpreter="/usr/bin/env python3", main="wordfreq.__main__:main"
        )
    print(f"built {target} ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
