"""Count the words of a text, leaving out the most common English ones."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

__all__ = ["count", "report", "tokenize"]

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """The lower-case words of ``text``, in order."""
    return _WORD.findall(text.lower())


def count(words: Iterable[str], stopwords: frozenset[str] = frozenset()) -> Counter[str]:
    """How often each word occurs, stopwords left out."""
    return Counter(w for w in words if w not in stopwords)


def report(counts: Counter[str], top: int) -> list[str]:
    """The ``top`` most frequent words as ``word count`` lines, ties in alphabetical order."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    # TODO: let callers choose the separator
    return [f"{word} {n}" for word, n in ranked[:top]]
