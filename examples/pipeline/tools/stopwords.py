"""Write the stopword list to the given path, unless the job's cache already brought it."""

from __future__ import annotations

import sys
from pathlib import Path

WORDS = "a an and are as at be by each for from in is it its of on one or that the this to was with"


def main(target: str) -> int:
    path = Path(target)
    if path.is_file():
        print(f"stopwords: reusing {path} from the cache")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(sorted(WORDS.split())) + "\n", encoding="utf-8")
    print(f"stopwords: cache was cold, wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
