"""Throughput of the job log pipeline (masking, token sanitising, UTF-8 repair, limit).

Feeds 100 MB of generated CI-style log text, with 50 masked values (8-40
characters) and a few GitLab tokens sprinkled in, through ``LogPipeline`` in
64 KiB chunks and prints MB/s (best of 3) next to a plain ``zlib.crc32`` pass
over the same data, the floor any log pipeline pays anyway.

Run: ``python bench/trace_throughput.py [--mb 100]``
"""

from __future__ import annotations

import argparse
import random
import string
import time
import zlib

from kuberunner.trace import LogPipeline

CHUNK = 64 * 1024
SECRET_ALPHABET = string.ascii_letters + string.digits + "+/=_-"
WORDS = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "for",
    "is",
    "on",
    "with",
    "from",
    "by",
    "build",
    "test",
    "cache",
    "artifact",
    "runner",
    "job",
    "step",
    "image",
    "pulling",
    "layer",
    "download",
    "complete",
    "installing",
    "collecting",
    "requirement",
    "already",
    "satisfied",
    "module",
    "compiling",
    "linking",
    "warning",
    "error",
    "passed",
    "failed",
    "skipped",
    "ok",
    "done",
    "using",
    "version",
    "resolving",
    "package",
    "dependency",
    "fetch",
    "checkout",
    "branch",
    "commit",
    "merge",
    "request",
    "pipeline",
    "stage",
    "service",
]
PACKAGES = [
    "requests",
    "numpy",
    "pandas",
    "lodash",
    "react",
    "express",
    "webpack",
    "typescript",
    "eslint",
    "pytest",
    "django",
]


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _line(rng: random.Random, i: int, secrets: list[str]) -> str:
    ts = f"2024-05-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}.{i % 1000:03d}Z"
    kind = rng.randrange(10)
    if kind == 0:
        line = f"{ts} Step {i % 40}/40 : RUN {' '.join(rng.choices(WORDS, k=5))}"
    elif kind == 1:
        line = f"{_hex(rng, 12)}: Pull complete sha256:{_hex(rng, 64)}"
    elif kind == 2:
        pkg = rng.choice(PACKAGES)
        spec = f"{pkg}>={rng.randrange(10)}.{rng.randrange(30)}"
        line = f"Collecting {spec} (from -r requirements.txt (line {i % 90}))"
    elif kind == 3:
        line = f"  CC       src/{rng.choice(WORDS)}/{rng.choice(WORDS)}_{i % 97}.o"
    elif kind == 4:
        line = f"PASSED tests/unit/test_{rng.choice(WORDS)}.py::test_{'_'.join(rng.choices(WORDS, k=3))}"
    elif kind == 5:
        line = f"\x1b[32;1m$ npm ci --prefer-offline\x1b[0;m added {i % 1500} packages in {i % 60}s"
    else:
        line = f"{ts} [INFO] {' '.join(rng.choices(WORDS, k=rng.randint(4, 14)))}"
    roll = rng.random()
    if roll < 0.004:
        line += f" export API_KEY={rng.choice(secrets)}"
    elif roll < 0.006:
        line += f" curl -H 'Authorization: Bearer {rng.choice(secrets)}' https://api.example.com"
    elif roll < 0.0065:
        line += f" git remote set-url origin https://oauth2:glpat-{_hex(rng, 20)}@gitlab.example.com/x.git"
    return line + "\n"


def build(total_mb: int, seed: int = 7) -> tuple[bytes, list[str]]:
    rng = random.Random(seed)
    secrets = ["".join(rng.choices(SECRET_ALPHABET, k=rng.randint(8, 40))) for _ in range(50)]
    unique = "".join(_line(rng, i, secrets) for i in range(40_000)).encode()
    total = total_mb * 1_000_000
    data = (unique * (total // len(unique) + 1))[:total]
    return data, secrets


def run_pipeline(data: bytes, secrets: list[str]) -> tuple[float, bytes]:
    pipeline = LogPipeline(secrets, limit_bytes=len(data) * 2)
    view = memoryview(data)
    chunks = [bytes(view[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]
    out: list[bytes] = []
    start = time.perf_counter()
    for chunk in chunks:
        out.append(pipeline.feed(chunk))
    out.append(pipeline.finish())
    return time.perf_counter() - start, b"".join(out)


def run_crc(data: bytes) -> float:
    view = memoryview(data)
    start = time.perf_counter()
    crc = 0
    for i in range(0, len(data), CHUNK):
        crc = zlib.crc32(view[i : i + CHUNK], crc)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="megabytes of log to feed (default 100)")
    parser.add_argument("--runs", type=int, default=3, help="take the best of this many runs")
    args = parser.parse_args()

    data, secrets = build(args.mb)
    mb = len(data) / 1e6
    pipeline_s = min(run_pipeline(data, secrets)[0] for _ in range(args.runs))
    crc_s = min(run_crc(data) for _ in range(args.runs))
    _, out = run_pipeline(data, secrets)
    leaked = sum(out.count(s.encode()) for s in secrets)
    print(f"data: {mb:.0f} MB in {CHUNK // 1024} KiB chunks, {len(secrets)} masked values")
    print(f"masked: {out.count(b'[MASKED]')} occurrences, leaked: {leaked}")
    print(f"LogPipeline: {mb / pipeline_s:8.1f} MB/s (best of {args.runs})")
    print(f"zlib.crc32:  {mb / crc_s:8.1f} MB/s")
    print(f"ratio: the pipeline takes {pipeline_s / crc_s:.1f}x the time of a bare crc32 pass")


if __name__ == "__main__":
    main()
