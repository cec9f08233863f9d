"""The local artifact store as a cache bucket (for pods of ``kuberunner exec --executor kubernetes``)."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kuberunner.helper.relay import RelayTransport
from kuberunner.runner.artifact_store import ArtifactStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ArtifactStore]:
    with ArtifactStore(tmp_path / "artifacts", cache_root=tmp_path / "cache") as running:
        yield running


def test_a_cache_object_put_is_what_a_later_get_returns(store: ArtifactStore, tmp_path: Path) -> None:
    url = store.cache_url("PUT", "project/42/deps-1")
    assert url is not None and url == store.cache_url("GET", "project/42/deps-1")
    assert httpx.get(url).status_code == 404  # not there yet
    assert httpx.put(url, content=b"zip bytes").status_code == 200
    got = httpx.get(url)
    assert (got.status_code, got.content) == (200, b"zip bytes")
    assert (tmp_path / "cache" / "project" / "42" / "deps-1").read_bytes() == b"zip bytes"
    assert httpx.put(url, content=b"newer").status_code == 200  # replaced whole
    assert httpx.get(url).content == b"newer"


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "a//b", "/abs", "sp ace", "."])
def test_a_name_that_could_leave_the_cache_directory_has_no_url(store: ArtifactStore, name: str) -> None:
    assert store.cache_url("GET", name) is None


def test_paths_outside_the_cache_are_refused_on_the_wire(store: ArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("no")
    for path in ("/cache/..%2Fsecret.txt", "/cache/a/%2E%2E/%2E%2E/secret.txt"):
        assert httpx.get(store.url + path).status_code == 404
        assert httpx.put(store.url + path, content=b"x").status_code == 404
    assert (tmp_path / "secret.txt").read_text() == "no"


def test_without_a_cache_root_there_is_no_bucket(tmp_path: Path) -> None:
    with ArtifactStore(tmp_path / "a") as plain:
        assert plain.cache_url("GET", "k") is None
        assert httpx.put(plain.url + "/cache/k", content=b"x").status_code == 404
        assert httpx.get(plain.url + "/cache/k").status_code == 404


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_relay_carries_requests_to_the_store_only_others_go_direct(
    store: ArtifactStore, tmp_path: Path
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        out = io.BytesIO()
        transport = RelayTransport(tmp_path, "kuberunner:abcd1234:", out, origin=store.url)
        with httpx.Client(transport=transport) as client:
            bucket = f"http://127.0.0.1:{server.server_address[1]}/bucket/key"
            direct = client.put(bucket, content=b"to s3")
            assert (direct.status_code, direct.content) == (200, b"to s3")  # a real round trip
            assert out.getvalue() == b""
            relayed = client.put(store.url + "/cache/k", content=b"to the store")
            assert relayed.status_code == 200 and b"relay:begin" in out.getvalue()
        assert httpx.get(store.url + "/cache/k").status_code == 404  # relayed: not sent by the pod itself
    finally:
        server.shutdown()
        server.server_close()
