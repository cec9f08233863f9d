"""GitLab's CI/CD expression language (``rules:if``, ``only:variables``, ``workflow:rules``).

Documented syntax: ``$VAR`` (true when set and non-empty), string literals in
single or double quotes, ``null``, ``==``/``!=``, ``=~``/``!~`` against a
``/regex/flags`` literal (or a variable holding one), ``&&`` (binds tighter),
``||`` and parentheses. Regexes are RE2 in GitLab; the subset used in CI files
maps onto Python's ``re`` (``\\z`` is translated, flags ``i``, ``m``, ``s``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ExpressionError", "compile_regex", "evaluate"]


class ExpressionError(ValueError):
    """The expression is not valid CI/CD expression syntax."""


@dataclass(frozen=True)
class _Regex:
    pattern: str
    flags: str


_Value = str | _Regex | None

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<lpar>\()
  | (?P<rpar>\))
  | (?P<and>&&)
  | (?P<or>\|\|)
  | (?P<op>==|!=|=~|!~)
  | (?P<var>\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<bracevar>\$\{[^}]*\})
  | (?P<dq>"(?:[^"\\]|\\.)*")
  | (?P<sq>'(?:[^'\\]|\\.)*')
  | (?P<regex>/(?:[^/\\]|\\.)*/[a-z]*)
  | (?P<null>null\b)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokenize(expr: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ExpressionError(f"unexpected `{expr[pos : pos + 20]}` at position {pos + 1}")
        kind = m.lastgroup or ""
        if kind == "bracevar":
            raise ExpressionError(f"use $VAR, not {m.group()}, in rules:if expressions")
        if kind != "ws":
            tokens.append(_Tok(kind, m.group()))
        pos = m.end()
    return tokens


def compile_regex(pattern: str, flags: str = "") -> re.Pattern[str]:
    """Compile an RE2-style pattern for Python; raises :class:`ExpressionError` if invalid."""
    py_flags = 0
    for f in flags:
        if f == "i":
            py_flags |= re.IGNORECASE
        elif f == "m":
            py_flags |= re.MULTILINE
        elif f == "s":
            py_flags |= re.DOTALL
        elif f in "gux":
            continue
        else:
            raise ExpressionError(f"unknown regex flag `{f}`")
    translated = re.sub(r"(?<!\\)((?:\\\\)*)\\z", r"\1\\Z", pattern)
    try:
        return re.compile(translated, py_flags)
    except re.error as exc:
        raise ExpressionError(f"invalid regular expression /{pattern}/: {exc}") from None


class _Parser:
    def __init__(self, tokens: list[_Tok], variables: Mapping[str, str]) -> None:
        self.tokens = tokens
        self.i = 0
        self.vars = variables

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise ExpressionError("unexpected end of expression")
        self.i += 1
        return tok

    def parse(self) -> bool:
        if not self.tokens:
            raise ExpressionError("empty expression")
        result = self.or_expr()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected `{self.peek().text}`")  # type: ignore[union-attr]
        return result

    def or_expr(self) -> bool:
        result = self.and_expr()
        while (tok := self.peek()) is not None and tok.kind == "or":
            self.take()
            right = self.and_expr()
            result = result or right
        return result

    def and_expr(self) -> bool:
        result = self.comparison()
        while (tok := self.peek()) is not None and tok.kind == "and":
            self.take()
            right = self.comparison()
            result = result and right
        return result

    def comparison(self) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "lpar":
            self.take()
            inner = self.or_expr()
            close = self.peek()
            if close is None or close.kind != "rpar":
                raise ExpressionError("missing `)`")
            self.take()
            return inner
        left = self.value()
        op = self.peek()
        if op is None or op.kind != "op":
            return _truthy(left)
        self.take()
        right = self.value()
        if op.text in ("==", "!="):
            equal = _equal(left, right)
            return equal if op.text == "==" else not equal
        matched = _match(left, right)
        return matched if op.text == "=~" else not matched

    def value(self) -> _Value:
        tok = self.take()
        if tok.kind == "var":
            return self.vars.get(tok.text[1:])
        if tok.kind in ("dq", "sq"):
            quote = tok.text[0]
            return tok.text[1:-1].replace("\\" + quote, quote)
        if tok.kind == "regex":
            body, _, flags = tok.text[1:].rpartition("/")
            return _Regex(body.replace("\\/", "/"), flags)
        if tok.kind == "null":
            return None
        raise ExpressionError(f"unexpected `{tok.text}`")


def _truthy(value: _Value) -> bool:
    if isinstance(value, _Regex):
        return True
    return bool(value)


def _equal(left: _Value, right: _Value) -> bool:
    if isinstance(left, _Regex) or isinstance(right, _Regex):
        return left == right
    return left == right


def _as_regex(value: _Value) -> _Regex | None:
    if isinstance(value, _Regex):
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"/(.*)/([a-z]*)", value, re.DOTALL)
        if m:
            return _Regex(m.group(1), m.group(2))
    return None


def _match(left: _Value, right: _Value) -> bool:
    if left is None or isinstance(left, _Regex):
        return False
    regex = _as_regex(right)
    if regex is None:
        if right is None:
            return False
        raise ExpressionError("the right side of =~ / !~ must be a /regex/ (or a variable holding one)")
    return compile_regex(regex.pattern, regex.flags).search(left) is not None


def evaluate(expression: str, variables: Mapping[str, str]) -> bool:
    """Evaluate ``expression`` with ``variables`` (unset variables are ``null``)."""
    return _Parser(_tokenize(expression), variables).parse()
