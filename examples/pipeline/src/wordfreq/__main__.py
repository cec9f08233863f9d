"""``python3 -m wordfreq [--top N] FILE...``: the most frequent words of the files."""

from __future__ import annotations

import argparse
import sys
from importlib import resources

from wordfreq import count, report, tokenize


def _stopwords() -> frozenset[str]:
    text = resources.files("wordfreq").joinpath("stopwords.txt").read_text(encoding="utf-8")
    return frozenset(text.split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wordfreq", description=__doc__)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    words: list[str] = []
    for name in args.files:
        with open(name, encoding="utf-8") as fh:
            words += tokenize(fh.read())
    for line in report(count(words, _stopwords()), args.top):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
