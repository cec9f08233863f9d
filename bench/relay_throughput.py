"""Throughput of the relay that carries uploads out of a job pod through its log (kuberunner exec
on Kubernetes): what the helper writes, and what the runner's log follower does with each line.

An upload of ``--mb`` MiB (random bytes, as a zip would be) is turned into log lines by
:func:`kuberunner.helper.relay.request_lines`; each line then goes the way the executor takes
it: a kubelet timestamp is stripped (:func:`split_timestamp`), the marker is found
(:func:`parse_marker`) and :class:`RelayReader` reassembles and checks the request. Prints
MB/s (best of 3) for both sides next to a bare ``base64`` encode + decode of the same bytes,
the floor any text-only channel pays, and the size of the log the upload takes.

Run: ``python bench/relay_throughput.py [--mb 16]``
"""

from __future__ import annotations

import argparse
import base64
import os
import time

from kuberunner.executors.kubernetes.driver import parse_marker
from kuberunner.executors.kubernetes.logs import split_timestamp
from kuberunner.helper.relay import RelayReader, request_lines

NONCE = "abcd1234ef56"
MARK = f"kuberunner:{NONCE}:"
STAMP = b"2026-11-29T19:00:00.123456789Z "


def best(fn: object, rounds: int = 3) -> float:
    assert callable(fn)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--mb", type=int, default=16, help="upload size in MiB (default 16, the relay's limit)"
    )
    args = parser.parse_args()
    body = os.urandom(args.mb * 1024 * 1024)
    headers = {"JOB-TOKEN": "glcbt-" + "0" * 32, "Content-Type": "multipart/form-data; boundary=x"}
    lines: list[bytes] = []

    def write() -> None:
        lines[:] = [
            STAMP + line.encode() + b"\n"
            for line in request_lines(MARK, "POST", "/api/v4/jobs/1/artifacts", headers, body)
        ]

    def read() -> None:
        reader = RelayReader()
        got = None
        for raw in lines:
            _, content = split_timestamp(raw)
            parsed = parse_marker(content, NONCE)
            assert parsed is not None
            got = reader.feed(parsed[1].note) or got
        assert got is not None and got.body == body

    def floor() -> None:
        assert base64.b64decode(base64.b64encode(body)) == body

    t_write, t_read, t_floor = best(write), best(read), best(floor)
    size = len(body) / (1024 * 1024)
    log_size = sum(len(line) for line in lines) / (1024 * 1024)
    print(
        f"upload {size:.0f} MiB -> {len(lines)} log lines, {log_size:.1f} MiB of log ({log_size / size:.2f}x)"
    )
    print(f"helper side (request -> lines):     {size / t_write:7.1f} MiB/s")
    print(f"runner side (lines -> request):     {size / t_read:7.1f} MiB/s")
    print(f"bare base64 encode + decode:        {size / t_floor:7.1f} MiB/s")
    print(f"relay (both sides) / bare base64:   {(t_write + t_read) / t_floor:7.2f}x the time")


if __name__ == "__main__":
    main()
