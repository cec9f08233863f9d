"""The job log pipeline: masking, token sanitising, UTF-8 repair, output limit, formatting."""

from __future__ import annotations

import itertools
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kuberunner.trace import (
    MASK,
    TOKEN_PREFIXES,
    JobTrace,
    LogPipeline,
    command_echo,
    header,
    limit_notice,
    section_end,
    section_start,
)

BIG = 1 << 40
TOKEN_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
PREFIXES = sorted((p.encode() for p in TOKEN_PREFIXES), key=len, reverse=True)
MAX_TOKEN_PREFIX = max(len(p) for p in PREFIXES)


def reference(data: bytes, values: list[str], limit: int = BIG) -> bytes:
    """What the whole stream must turn into, computed naively in one go."""
    text = data.decode("utf-8", "replace").encode()
    encoded = sorted({v.encode() for v in values if v}, key=len, reverse=True)
    out = bytearray()
    i = 0
    while i < len(text):
        for value in encoded:
            if text.startswith(value, i):
                out += MASK
                i += len(value)
                break
        else:
            out.append(text[i])
            i += 1
    text, out, i = bytes(out), bytearray(), 0
    while i < len(text):
        for prefix in PREFIXES:
            j = i + len(prefix)
            if text.startswith(prefix, i) and j < len(text) and text[j] in TOKEN_CHARS:
                while j < len(text) and text[j] in TOKEN_CHARS:
                    j += 1
                out += prefix + MASK
                i = j
                break
        else:
            out.append(text[i])
            i += 1
    text = bytes(out)
    if len(text) > limit:
        cut = limit
        while cut > 0 and (text[cut] & 0xC0) == 0x80:
            cut -= 1
        text = text[:cut] + limit_notice(limit)
    return text


def run(pipeline: LogPipeline, pieces: list[bytes], *, bound: int | None = None) -> bytes:
    out = []
    for piece in pieces:
        out.append(pipeline.feed(piece))
        if bound is not None:
            assert pipeline.pending_bytes <= bound
    out.append(pipeline.finish())
    return b"".join(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# Values never share a character with "[MASKED]", else the mask itself could spell one.
ASCII_ALPHABET = "abcxyz0129-_./"
TEXT_ALPHABET = "abcéxyz€0129-_./😀 \n"


@st.composite
def streams(
    draw: st.DrawFn, alphabet: str, min_value: int = 1, max_value: int = 8
) -> tuple[list[str], bytes, list[int]]:
    values = draw(st.lists(st.text(alphabet, min_size=min_value, max_size=max_value), min_size=1, max_size=4))
    piece = st.one_of(
        st.sampled_from(values).map(str.encode),
        st.text(TEXT_ALPHABET, max_size=6).map(str.encode),
        st.sampled_from(PREFIXES),
        st.binary(max_size=3),
    )
    data = b"".join(draw(st.lists(piece, max_size=25)))
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=12))
    return values, data, cuts


def max_hold(values: list[str]) -> int:
    return max(len(v.encode()) for v in values) - 1 + MAX_TOKEN_PREFIX + 3


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(ASCII_ALPHABET))
def test_ascii_values_are_masked_under_any_split(case: tuple[list[str], bytes, list[int]]) -> None:
    values, data, cuts = case
    whole = run(LogPipeline(values), [data])
    pieces = run(LogPipeline(values), split(data, cuts), bound=max_hold(values))
    assert pieces == whole == reference(data, values)
    for value in values:
        assert value.encode() not in whole


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams("aé€😀x1-"))
def test_non_ascii_values_are_masked_under_any_split(case: tuple[list[str], bytes, list[int]]) -> None:
    values, data, cuts = case
    whole = run(LogPipeline(values), [data])
    assert run(LogPipeline(values), bytewise(data)) == whole
    assert run(LogPipeline(values), split(data, cuts), bound=max_hold(values)) == whole
    assert whole == reference(data, values)
    for value in values:
        assert value.encode() not in whole


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams("ab", min_value=60, max_value=150))
def test_values_longer_than_the_partial_lookup_table_are_masked_under_any_split(
    case: tuple[list[str], bytes, list[int]],
) -> None:
    values, data, cuts = case
    out = run(LogPipeline(values), split(data, cuts), bound=max_hold(values))
    assert out == reference(data, values)
    for value in values:
        assert value.encode() not in out


def test_long_value_split_after_more_than_64_bytes_is_masked() -> None:
    value = "k" * 70 + "-tail"
    data = f"x {value} y".encode()
    for cut in (60, 68, 72, 75):
        pipeline = LogPipeline([value])
        first = pipeline.feed(data[:cut])
        assert first == b"x "
        assert pipeline.pending_bytes == cut - 2
        assert first + pipeline.feed(data[cut:]) + pipeline.finish() == b"x [MASKED] y"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams("aé€x1-"), st.integers(1, 60))
def test_output_limit_cuts_cleanly_under_any_split(
    case: tuple[list[str], bytes, list[int]], limit: int
) -> None:
    values, data, cuts = case
    pipeline = LogPipeline(values, limit_bytes=limit)
    out = run(pipeline, split(data, cuts))
    assert out == reference(data, values, limit)
    assert pipeline.bytesize == len(out)
    assert pipeline.checksum == f"crc32:{zlib.crc32(out):08x}"
    notice = limit_notice(limit)
    assert out.count(notice) == int(pipeline.truncated)
    if pipeline.truncated:
        kept = out[: -len(notice)]
        assert out.endswith(notice)
        assert len(kept) <= limit
        kept.decode("utf-8")  # no character was split
        assert reference(data, values).startswith(kept)


def test_values_are_masked_after_the_pipeline_adapts_to_the_log() -> None:
    # Past the first 32 KiB the pipeline tunes its search to the log's common bytes;
    # values made of those bytes only, or of rare ones, must be masked all the same.
    log = b"".join(b"step %d: compiling module_%d ok\n" % (i, i * 7) for i in range(3000))
    values = ["compiling", "Zq9", "module_42-Secret", "ok\nstep"]
    secrets = b"x compiling y Zq9 module_42-Secret z\n" * 3
    data = log + secrets + log[:500] + secrets
    expected = reference(data, values)
    assert expected.count(MASK) > 20
    for size in (3, 100, 4096, 65536):
        pieces = [data[i : i + size] for i in range(0, len(data), size)]
        assert run(LogPipeline(values, limit_bytes=BIG), pieces) == expected, size


def test_value_split_one_byte_per_write_is_masked() -> None:
    out = run(LogPipeline(["s3cr3t-value"]), bytewise(b"token=s3cr3t-value;"))
    assert out == b"token=[MASKED];"


def test_longest_value_wins_where_values_overlap() -> None:
    values = ["abc", "abcdef", "cdefgh"]
    assert run(LogPipeline(values), [b"xabcdefy"]) == b"x[MASKED]y"
    assert run(LogPipeline(values), bytewise(b"xabcdeX")) == b"x[MASKED]deX"
    # leftmost first: "abcdef" starts before "cdefgh"
    assert run(LogPipeline(values), bytewise(b"abcdefgh")) == b"[MASKED]gh"


def test_text_that_cannot_start_a_value_is_not_held_back() -> None:
    pipeline = LogPipeline(["supersecret"])
    assert pipeline.feed(b"hello\n") == b"hello\n"
    assert pipeline.feed(b"a sup") == b"a "
    assert pipeline.pending_bytes == 3
    assert pipeline.feed(b"er") == b""
    assert pipeline.feed(b"b!") == b"superb!"
    assert pipeline.finish() == b""


def test_non_ascii_value_split_inside_a_character_is_masked() -> None:
    value = "päss€wörd"
    data = f"login {value} ok".encode()
    cut = data.index("€".encode()) + 1
    assert run(LogPipeline([value]), [data[:cut], data[cut:]]) == b"login [MASKED] ok"


def test_empty_masked_values_are_ignored() -> None:
    assert run(LogPipeline(["", "k"]), [b"kept"]) == b"[MASKED]ept"


def test_value_added_later_masks_what_is_still_held_back() -> None:
    pipeline = LogPipeline(["longsecretvalue"])
    assert pipeline.feed(b"x lon") == b"x "
    pipeline.add_masked("lonely")
    assert pipeline.feed(b"ely y") == b"[MASKED] y"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"glpat-abc_123 x", b"glpat-[MASKED] x"),
        (b"url https://oauth2:glpat-x1-Y2@host", b"url https://oauth2:glpat-[MASKED]@host"),
        (b"glrtr-abc", b"glrtr-[MASKED]"),
        (b"glrt-abc", b"glrt-[MASKED]"),
        (b"glcbt-64_abc.rest", b"glcbt-[MASKED].rest"),
        (b"GR1348941abcDEF x", b"GR1348941[MASKED] x"),
        (b"glagent-A glsoat-B glffct-C", b"glagent-[MASKED] glsoat-[MASKED] glffct-[MASKED]"),
        (b"glpat- no token", b"glpat- no token"),
        (b"a glpat-", b"a glpat-"),
        (b"glpa-x gl-x", b"glpa-x gl-x"),
    ],
)
def test_gitlab_tokens_are_masked_after_their_prefix(text: bytes, expected: bytes) -> None:
    assert run(LogPipeline([]), [text]) == expected
    assert run(LogPipeline([]), bytewise(text)) == expected


def test_token_is_masked_as_soon_as_it_is_recognised_and_its_rest_swallowed() -> None:
    pipeline = LogPipeline([], limit_bytes=BIG)
    assert pipeline.feed(b"push glpat") == b"push "
    assert pipeline.feed(b"-") == b""
    assert pipeline.feed(b"Z") == b"glpat-[MASKED]"
    for _ in range(200):  # 12.8 MB of token characters
        assert pipeline.feed(b"x" * 65536) == b""
        assert pipeline.pending_bytes == 0
    assert pipeline.feed(b"_9 done\n") == b" done\n"
    assert pipeline.finish() == b""
    assert not pipeline.truncated


def test_invalid_utf8_becomes_replacement_character() -> None:
    out = run(LogPipeline([]), [b"ok \xff\xfe bad \xc3"])
    assert out == "ok \ufffd\ufffd bad \ufffd".encode()


def test_multibyte_character_split_across_writes_is_kept() -> None:
    data = "naïve € 😀".encode()
    assert run(LogPipeline([]), bytewise(data)) == data


def test_limit_cuts_before_a_character_it_would_split() -> None:
    pipeline = LogPipeline([], limit_bytes=5)
    out = pipeline.feed(b"abc") + pipeline.feed("d€f".encode())
    assert out == b"abcd" + limit_notice(5)
    assert b"Job's log exceeded limit of 5 bytes." in out
    assert pipeline.truncated
    assert pipeline.feed(b"more") == b""
    assert pipeline.finish() == b""
    assert pipeline.bytesize == len(out)


def test_output_of_exactly_the_limit_is_not_truncated() -> None:
    pipeline = LogPipeline([], limit_bytes=4)
    assert run(pipeline, [b"ab", b"cd"]) == b"abcd"
    assert not pipeline.truncated


def test_held_back_memory_stays_bounded_on_a_long_near_match() -> None:
    value = "a" * 39 + "b"
    pipeline = LogPipeline([value], limit_bytes=BIG)
    chunk = b"a" * 65536
    total = 0
    for _ in range(50 * 1024 * 1024 // len(chunk)):
        total += len(pipeline.feed(chunk))
        assert pipeline.pending_bytes <= len(value) - 1
    assert total + len(pipeline.finish()) == 50 * 1024 * 1024


def test_checksum_and_bytesize_describe_the_emitted_bytes() -> None:
    pipeline = LogPipeline(["hunter22"], limit_bytes=10_000)
    out = run(pipeline, [b"pass=hunter", b"22\n", b"\xe2\x82", b"\xac\n"])
    assert out == "pass=[MASKED]\n€\n".encode()
    assert pipeline.bytesize == len(out)
    assert pipeline.checksum == f"crc32:{zlib.crc32(out):08x}"


def test_feed_after_finish_is_refused_and_finish_is_idempotent() -> None:
    pipeline = LogPipeline([])
    pipeline.feed(b"x glpat")
    assert pipeline.finish() == b"glpat"
    assert pipeline.finish() == b""
    with pytest.raises(RuntimeError):
        pipeline.feed(b"late")


def test_non_positive_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit_bytes"):
        LogPipeline([], limit_bytes=0)


def test_repr_reveals_no_secret() -> None:
    pipeline = LogPipeline(["topsecret1"])
    pipeline.feed(b"a topsec")
    trace = JobTrace(lambda _: None, ["topsecret1"])
    assert "topsec" not in repr(pipeline)
    assert "topsec" not in repr(trace)


def test_formatting_helpers() -> None:
    assert section_start("get_sources", 1700000000) == b"section_start:1700000000:get_sources\r\x1b[0K"
    assert (
        section_start("step_script", 5, collapsed=True)
        == b"section_start:5:step_script[collapsed=true]\r\x1b[0K"
    )
    assert section_end("get_sources", 1700000009) == b"section_end:1700000009:get_sources\r\x1b[0K"
    assert header("k8s-runner", "1.2.3", "abcdef12", "xYz12345") == (
        b"Running with kuberunner 1.2.3 (abcdef12)\n  on k8s-runner xYz12345\n"
    )
    assert command_echo("make test") == b"\x1b[32;1m$ make test\x1b[0;m\n"
    assert limit_notice(7) == (
        b"\n\x1b[31;1mJob's log exceeded limit of 7 bytes.\n"
        b"Job execution will continue but no more output will be collected.\x1b[0;m\n"
    )


@pytest.mark.parametrize("name", ["", "has space", "semi:colon", "line\nbreak"])
def test_invalid_section_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="section name"):
        section_start(name, 1)


class Sink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        assert data, "the sink must never be called with nothing"
        self.chunks.append(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def test_job_trace_writes_sections_messages_and_commands() -> None:
    sink = Sink()
    ticks = iter([100.7, 105.2])
    trace = JobTrace(sink, ["s3cr3tpass"], clock=lambda: next(ticks))
    with trace.section("get_sources", "Getting source from Git repository"):
        trace.command("git fetch --depth 1")
        trace.info("Fetched with s3cr3tpass")
        trace.notice("Skipping Git submodules setup")
        trace.warning("shallow clone")
        trace.error("something broke")
    trace.finish()
    assert sink.data == (
        b"section_start:100:get_sources\r\x1b[0K"
        b"\x1b[0K\x1b[36;1mGetting source from Git repository\x1b[0;m\n"
        b"\x1b[32;1m$ git fetch --depth 1\x1b[0;m\n"
        b"Fetched with [MASKED]\n"
        b"\x1b[32;1mSkipping Git submodules setup\x1b[0;m\n"
        b"\x1b[0;33mWARNING: shallow clone\x1b[0;m\n"
        b"\x1b[31;1mERROR: something broke\x1b[0;m\n"
        b"section_end:105:get_sources\r\x1b[0K"
    )
    assert trace.bytesize == len(sink.data)
    assert trace.checksum == f"crc32:{zlib.crc32(sink.data):08x}"


def test_job_trace_without_sections_keeps_titles_only() -> None:
    sink = Sink()
    trace = JobTrace(sink, [], sections=False, clock=lambda: 1.0)
    trace.section_start("step_script", "Executing step_script", collapsed=True)
    trace.section_end("step_script")
    trace.finish()
    assert sink.data == b"\x1b[0K\x1b[36;1mExecuting step_script\x1b[0;m\n"


def test_job_trace_section_is_closed_when_the_block_raises() -> None:
    sink = Sink()
    trace = JobTrace(sink, [], clock=lambda: 7.0)
    with pytest.raises(KeyError), trace.section("after_script", collapsed=True):
        raise KeyError("boom")
    trace.finish()
    assert sink.data == (
        b"section_start:7:after_script[collapsed=true]\r\x1b[0Ksection_end:7:after_script\r\x1b[0K"
    )


def test_job_trace_masks_late_secrets_and_flushes_once() -> None:
    sink = Sink()
    trace = JobTrace(sink, [], limit_bytes=1000)
    trace.write(b"token: ")
    trace.add_masked("runtime-secret")
    trace.write(b"runtime-secret\nglpat-")
    trace.write(b"abc")
    trace.write(b"\nbye glp")
    trace.finish()
    trace.finish()
    assert sink.data == b"token: [MASKED]\nglpat-[MASKED]\nbye glp"
    assert trace.bytesize == len(sink.data)
    assert trace.checksum == f"crc32:{zlib.crc32(sink.data):08x}"
    assert not trace.truncated
    with pytest.raises(RuntimeError):
        trace.write(b"after the end")


def test_job_trace_stops_at_the_limit() -> None:
    sink = Sink()
    trace = JobTrace(sink, [], limit_bytes=16)
    for i in range(10):
        trace.info(f"line {i}")
    trace.finish()
    assert sink.data == b"line 0\nline 1\nli" + limit_notice(16)
    assert trace.truncated
    assert trace.bytesize == len(sink.data)
    assert trace.checksum == f"crc32:{zlib.crc32(sink.data):08x}"
