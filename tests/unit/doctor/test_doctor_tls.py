"""An untrusted certificate described, and the CA that trusts it found, against a real TLS server."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from kuberunner.doctor import tls


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="cluster-ca")


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[str]:
    """A TLS server on 127.0.0.1 presenting only its leaf certificate, as kube-apiserver does."""
    cert = ca.issue_cert("127.0.0.1", "kubernetes.default.svc", common_name="kube-apiserver")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


async def test_describe_with_cryptography(server: str) -> None:
    info = tls.describe_certificate(await tls.fetch_server_certificate(server))
    assert "CN=kube-apiserver" in info.subject
    assert "O=cluster-ca" in info.issuer
    assert info.names == ("127.0.0.1", "kubernetes.default.svc")  # in the certificate's order
    assert not info.self_signed


async def test_describe_without_cryptography(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where cryptography is not installed, CPython's own decoder gives the same facts."""
    pem = await tls.fetch_server_certificate(server)
    expected = tls.describe_certificate(pem)

    def no_cryptography(pem: str) -> tls.CertificateInfo:
        raise ImportError("cryptography")

    monkeypatch.setattr(tls, "_describe_cryptography", no_cryptography)
    info = tls.describe_certificate(pem)
    assert (info.subject, info.issuer, info.names) == (expected.subject, expected.issuer, expected.names)


def _kubeconfig(path: Path, clusters: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": clusters}))
    return path


async def test_the_trusting_ca_is_found_among_candidates(server: str, ca: trustme.CA, tmp_path: Path) -> None:
    other = trustme.CA(organization_name="another-cluster")
    data = base64.b64encode(ca.cert_pem.bytes()).decode()
    wrong = base64.b64encode(other.cert_pem.bytes()).decode()
    config = _kubeconfig(
        tmp_path / "kubeconfig",
        [
            {
                "name": "elsewhere",
                "cluster": {"server": "https://10.9.9.9:6443", "certificate-authority-data": wrong},
            },
            {"name": "this", "cluster": {"server": server, "certificate-authority-data": data}},
        ],
    )
    well_known = tmp_path / "ca.crt"
    other.cert_pem.write_to_path(str(well_known))
    candidates = tls.ca_candidates(server, environ={"KUBECONFIG": str(config)}, well_known=[well_known])
    labels = [c.label for c in candidates]
    assert labels[0] == str(well_known)
    assert labels[1].endswith(f"cluster 'this' (server {server})")  # the cluster for this host comes first
    found = await tls.trusted_by(server, candidates)
    assert found is not None and found.cluster == "this" and found.kubeconfig == str(config)


async def test_relative_certificate_authority_path_and_no_match(server: str, tmp_path: Path) -> None:
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "other.crt"))
    config = _kubeconfig(
        tmp_path / "kubeconfig",
        [{"name": "c", "cluster": {"server": server, "certificate-authority": "other.crt"}}],
    )
    candidates = tls.ca_candidates(server, environ={"KUBECONFIG": str(config)}, well_known=[])
    assert [c.path for c in candidates] == [str(tmp_path / "other.crt")]
    assert await tls.trusted_by(server, candidates) is None


def test_missing_or_broken_kubeconfig_gives_no_candidates(tmp_path: Path) -> None:
    (tmp_path / "broken").write_text("clusters: [\n")
    for env in ({"KUBECONFIG": str(tmp_path / "broken")}, {"HOME": str(tmp_path)}):
        assert tls.ca_candidates("https://127.0.0.1:6443", environ=env, well_known=[]) == []


def test_host_port() -> None:
    assert tls.host_port("https://192.168.80.130:6443") == ("192.168.80.130", 6443)
    assert tls.host_port("https://[::1]:6443/") == ("::1", 6443)
    assert tls.host_port("https://kube.example.com") == ("kube.example.com", 443)
