"""The key -> line locator behind every ``FILE:LINE`` that config check prints."""

from __future__ import annotations

import tomllib
from typing import Any

import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kuberunner.config.load import KeyPath, locate_keys


def _text(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def test_tables_and_keys_get_their_own_lines() -> None:
    text = _text(
        "concurrent = 4",  # 1
        "",  # 2
        "[session_server]",  # 3
        "  session_timeout = 1800",  # 4
    )
    lines = locate_keys(text)
    assert lines[("concurrent",)] == 1
    assert lines[("session_server",)] == 3
    assert lines[("session_server", "session_timeout")] == 4


def test_arrays_of_tables_are_counted_per_parent_entry() -> None:
    text = _text(
        "[[runners]]",  # 1
        '  name = "a"',  # 2
        "  [runners.kubernetes]",  # 3
        "    [[runners.kubernetes.volumes.host_path]]",  # 4
        '      name = "a0"',  # 5
        "    [[runners.kubernetes.volumes.host_path]]",  # 6
        '      name = "a1"',  # 7
        "[[runners]]",  # 8
        '  name = "b"',  # 9
        "  [runners.kubernetes]",  # 10
        '    namespace = "b"',  # 11
        "    [[runners.kubernetes.volumes.host_path]]",  # 12
        '      name = "b0"',  # 13
    )
    lines = locate_keys(text)
    assert lines[("runners", 0)] == 1
    assert lines[("runners", 0, "name")] == 2
    assert lines[("runners", 0, "kubernetes", "volumes", "host_path", 0, "name")] == 5
    assert lines[("runners", 0, "kubernetes", "volumes", "host_path", 1, "name")] == 7
    assert lines[("runners", 1)] == 8
    assert lines[("runners", 1, "kubernetes")] == 10
    assert lines[("runners", 1, "kubernetes", "namespace")] == 11
    # numbering restarts inside the second runner, as in the parsed data
    assert lines[("runners", 1, "kubernetes", "volumes", "host_path", 0, "name")] == 13
    assert ("runners", 1, "kubernetes", "volumes", "host_path", 1) not in lines
    # an implicitly created table gets the line where it first appears
    assert lines[("runners", 0, "kubernetes", "volumes")] == 4


def test_dotted_and_quoted_keys() -> None:
    text = _text(
        "[[runners]]",  # 1
        '  kubernetes.namespace = "x"',  # 2
        '  kubernetes . "pod_labels" . "app.kubernetes.io/name" = "ci"',  # 3
        "  [runners.kubernetes.node_tolerations]",  # 4
        '    "node-role.kubernetes.io/master" = "NoSchedule"',  # 5
        "    'literal.key' = \"NoExecute\"",  # 6
        '    "esc\\"aped" = ""',  # 7
    )
    lines = locate_keys(text)
    assert lines[("runners", 0, "kubernetes", "namespace")] == 2
    assert lines[("runners", 0, "kubernetes", "pod_labels", "app.kubernetes.io/name")] == 3
    tolerations: KeyPath = ("runners", 0, "kubernetes", "node_tolerations")
    assert lines[(*tolerations, "node-role.kubernetes.io/master")] == 5
    assert lines[(*tolerations, "literal.key")] == 6
    assert lines[(*tolerations, 'esc"aped')] == 7


def test_inline_tables_and_multiline_arrays() -> None:
    text = _text(
        "[[runners]]",  # 1
        "  [runners.kubernetes]",  # 2
        "    host_aliases = [",  # 3
        '      { ip = "10.0.0.1", hostnames = ["a"] },  # first',  # 4
        "      # a comment with [brackets] and = signs",  # 5
        "      {",  # 6
        '        ip = "10.0.0.2",',  # 7
        '        hostnames = ["b", "c"],',  # 8
        "      },",  # 9
        "    ]",  # 10
        '    pull_policy = ["always",',  # 11
        '      "never"]',  # 12
        '    image = "after"',  # 13
    )
    lines = locate_keys(text)
    aliases: KeyPath = ("runners", 0, "kubernetes", "host_aliases")
    assert lines[aliases] == 3
    assert lines[(*aliases, 0)] == 4
    assert lines[(*aliases, 0, "ip")] == 4
    assert lines[(*aliases, 1)] == 6
    assert lines[(*aliases, 1, "ip")] == 7
    assert lines[(*aliases, 1, "hostnames", 1)] == 8
    assert lines[("runners", 0, "kubernetes", "pull_policy", 1)] == 12
    assert lines[("runners", 0, "kubernetes", "image")] == 13


def test_multiline_strings_that_look_like_toml_are_skipped() -> None:
    text = _text(
        "[[runners]]",  # 1
        '  pre_build_script = """',  # 2
        "[[runners]]",  # 3
        'name = "not a key"',  # 4
        '\\"""',  # 5  an escaped quote and two quotes: not the end
        "[[runners]]",  # 6
        '"""',  # 7
        "  post_build_script = '''",  # 8
        "[runners.kubernetes]",  # 9
        "''''",  # 10  ends with an extra quote that belongs to the string
        '  clone_url = "https://x/#not-a-comment" # a comment',  # 11
        '  executor = "shell"',  # 12
    )
    lines = locate_keys(text)
    assert ("runners", 1) not in lines
    assert ("runners", 0, "name") not in lines
    assert ("runners", 0, "kubernetes") not in lines
    assert lines[("runners", 0, "pre_build_script")] == 2
    assert lines[("runners", 0, "post_build_script")] == 8
    assert lines[("runners", 0, "clone_url")] == 11
    assert lines[("runners", 0, "executor")] == 12
    assert tomllib.loads(text)["runners"][0]["executor"] == "shell"


def test_crlf_line_endings_and_datetimes_with_spaces() -> None:
    text = 'a = 1979-05-27 07:32:00Z\r\nb = "x"\r\n[t]\r\nc = 2\r\n'
    lines = locate_keys(text)
    assert lines == {("a",): 1, ("b",): 2, ("t",): 3, ("t", "c"): 4}


# ---------------------------------------------------------------------------- property

_keys = st.text(alphabet="abcxyz_-.é \"'", min_size=1, max_size=8)
_scalars = st.one_of(
    st.integers(-5, 5),
    st.booleans(),
    st.text(alphabet="ab\n\"'#[]=\\ ", max_size=10),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(_keys, inner, min_size=1, max_size=3),
    ),
    max_leaves=8,
)
_documents = st.dictionaries(_keys, _values, max_size=5)


def _leaves(value: Any, path: KeyPath = ()) -> list[KeyPath]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(value, list) and value:
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))]
    return [path]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_every_parsed_key_is_located_on_a_line_that_mentions_it(doc: dict[str, Any]) -> None:
    """Whatever tomlkit writes (tables, arrays of tables, inline tables, quoted keys, escapes),
    every key of the parsed data is found, and on a line of the text that holds its key."""
    text = tomlkit.dumps(doc)
    parsed = tomllib.loads(text)
    lines = locate_keys(text)
    source = text.splitlines()
    for leaf in _leaves(parsed):
        if not leaf:
            continue
        assert leaf in lines, (leaf, text)
        line = source[lines[leaf] - 1]
        last_key = next((p for p in reversed(leaf) if isinstance(p, str)), None)
        if last_key is not None and leaf[-1] == last_key and last_key.isalnum():
            assert last_key in line, (leaf, line, text)
