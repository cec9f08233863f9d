"""YAML loading with locations, the rules:if expression language and glob semantics."""

from __future__ import annotations

import re

import pytest

from kuberunner.pipeline.errors import Location, PipelineError
from kuberunner.pipeline.expressions import ExpressionError, evaluate
from kuberunner.pipeline.globs import exists_regex, include_regex
from kuberunner.pipeline.yamlio import LMap, LSeq, Reference, load_documents, plain


def test_values_keep_the_line_and_column_they_were_written_at() -> None:
    (doc,) = load_documents("job:\n  stage: build\n  script:\n    - echo a\n    - echo b\n", "ci.yml")
    job = doc["job"]
    assert isinstance(job, LMap)
    assert job.key_loc("script") == Location("ci.yml", 3, 3)
    assert job.value_loc("stage") == Location("ci.yml", 2, 10)
    script = job["script"]
    assert isinstance(script, LSeq)
    assert script.item_loc(1) == Location("ci.yml", 5, 7)


def test_anchors_aliases_and_merge_keys_are_expanded() -> None:
    text = ".base: &base\n  stage: test\n  tags: [a]\njob:\n  <<: *base\n  tags: [b]\n  script: [x]\n"
    (doc,) = load_documents(text, "ci.yml")
    assert plain(doc["job"]) == {"stage": "test", "tags": ["b"], "script": ["x"]}


def test_reference_tag_becomes_a_reference_with_its_location() -> None:
    (doc,) = load_documents("job:\n  script: !reference [.tpl, script]\n", "ci.yml")
    ref = doc["job"]["script"]
    assert isinstance(ref, Reference)
    assert ref.path == [".tpl", "script"]
    assert ref.loc == Location("ci.yml", 2, 11)


def test_invalid_yaml_names_file_line_and_column() -> None:
    with pytest.raises(PipelineError) as info:
        load_documents("job:\n  script: [a, b\n  stage: test\n", "broken.yml")
    assert info.value.file == "broken.yml"
    assert info.value.line == 3
    assert "invalid YAML" in str(info.value)


def test_duplicate_keys_are_rejected_with_their_line() -> None:
    with pytest.raises(PipelineError) as info:
        load_documents("job:\n  stage: a\n  stage: b\n", "dup.yml")
    assert info.value.line == 3
    assert "stage" in str(info.value)


def test_unknown_tags_are_rejected() -> None:
    with pytest.raises(PipelineError, match="unknown YAML tag `!include`"):
        load_documents("job: !include [x]\n", "ci.yml")


def test_standard_tags_give_plain_values() -> None:
    (doc,) = load_documents("a: !!str 3\nb: !!int '4'\n", "ci.yml")
    assert doc == {"a": "3", "b": 4}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$BRANCH", True),
        ("$EMPTY", False),
        ("$UNSET", False),
        ('$BRANCH == "main"', True),
        ("$BRANCH == 'main'", True),
        ('$BRANCH != "main"', False),
        ("$UNSET == null", True),
        ("$EMPTY == null", False),
        ('$EMPTY == ""', True),
        ("$BRANCH == $DEFAULT", True),
        ("$BRANCH =~ /^ma/", True),
        ("$BRANCH =~ /^MA/", False),
        ("$BRANCH =~ /^MA/i", True),
        ("$BRANCH !~ /^ma/", False),
        ("$UNSET =~ /x/", False),
        ("$UNSET !~ /x/", True),
        ("$BRANCH =~ $PATTERN", True),
        ('$BRANCH == "x" || $BRANCH == "main"', True),
        ('$BRANCH == "main" && $UNSET', False),
        ('$BRANCH == "x" && $UNSET || $BRANCH', True),
        ('$BRANCH == "x" && ($UNSET || $BRANCH)', False),
        ("$TAG =~ /^v\\d+\\.\\d+\\z/", True),
        ("$PATH_LIKE =~ /^a\\/b/", True),
    ],
)
def test_expressions_follow_gitlab_semantics(expression: str, expected: bool) -> None:
    variables = {
        "BRANCH": "main",
        "DEFAULT": "main",
        "EMPTY": "",
        "PATTERN": "/ai/",
        "TAG": "v1.2",
        "PATH_LIKE": "a/b/c",
    }
    assert evaluate(expression, variables) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("${BRANCH} == 'x'", "use $VAR"),
        ("$A ==", "unexpected end"),
        ("($A", "missing `)`"),
        ("$A = 'x'", "unexpected"),
        ("$A =~ 'x'", "must be a /regex/"),
        ("$A =~ /(/", "invalid regular expression"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        evaluate(expression, {"A": "x"})


def test_include_wildcards_follow_the_documented_examples() -> None:
    files = ["configs/a.yml", "configs/sub/b.yml", "configs/sub/deep/c.yml", "other/d.yml"]
    assert [f for f in files if include_regex("configs/**.yml").match(f)] == files[:3]
    assert [f for f in files if include_regex("configs/**/*.yml").match(f)] == files[1:3]
    assert [f for f in files if include_regex("configs/*.yml").match(f)] == files[:1]
    assert [f for f in files if include_regex("/configs/*.yml").match(f)] == files[:1]


def test_exists_patterns_match_recursively_dotfiles_and_braces() -> None:
    assert exists_regex("dir/**/*").match("dir/.gitkeep")
    assert exists_regex("dir/**/*").match("dir/a/b/c.txt")
    assert not exists_regex("dir/*").match("dir/a/b.txt")
    assert exists_regex("*.{js,ts}").match("x.ts")
    assert not exists_regex("*.{js,ts}").match("x.py")
