"""An untrusted server certificate, explained: who issued it, and which CA on this machine trusts it.

When the handshake fails with "unable to get local issuer certificate", the
certificate is fetched again *without* verification, only to show its subject,
issuer and names (it is never trusted). Then each place a cluster CA usually
lives is tried in a real handshake: the one that succeeds is the ``ca_file``
to configure.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import socket
import ssl
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

__all__ = [
    "CACandidate",
    "CertificateInfo",
    "ca_candidates",
    "describe_certificate",
    "fetch_server_certificate",
    "host_port",
    "trusted_by",
]

# Where a cluster CA usually is: kubeadm control-plane nodes, and every pod.
WELL_KNOWN_CA_FILES = (
    Path("/etc/kubernetes/pki/ca.crt"),
    Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"),
)
_TIMEOUT = 10.0


@dataclass(frozen=True)
class CertificateInfo:
    """What a server presented (parsed without trusting it)."""

    subject: str
    issuer: str
    names: tuple[str, ...] = ()  # subjectAltName DNS names and IP addresses
    not_after: str = ""
    self_signed: bool = False

    def lines(self) -> list[str]:
        out = [f"certificate presented: subject {self.subject or '(empty)'}; issuer {self.issuer}"]
        if self.names:
            out.append("names in the certificate: " + ", ".join(self.names))
        if self.not_after:
            out.append(f"valid until {self.not_after}")
        return out


@dataclass(frozen=True)
class CACandidate:
    """A CA bundle that might be the cluster's: a file, or PEM text from a kubeconfig."""

    label: str  # for messages: "/etc/kubernetes/pki/ca.crt", "kubeconfig ~/.kube/config, cluster kind"
    path: str = ""
    pem: str = field(default="", repr=False)
    kubeconfig: str = ""  # the kubeconfig file it came from (certificate-authority-data)
    cluster: str = ""  # that kubeconfig's cluster name


def host_port(url: str) -> tuple[str, int]:
    """``https://h:6443/x`` → ("h", 6443); default port 443."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    return parts.hostname or "", parts.port or 443


def _fetch(host: str, port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=_TIMEOUT) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server sent no certificate")
    return ssl.DER_cert_to_PEM_cert(der)


async def fetch_server_certificate(url: str) -> str:
    """The PEM certificate ``url``'s server presents, fetched WITHOUT verification (only to describe it)."""
    host, port = host_port(url)
    return await asyncio.to_thread(_fetch, host, port)


def describe_certificate(pem: str) -> CertificateInfo:
    """Subject, issuer, names and expiry: with ``cryptography`` if installed, else the stdlib decoder."""
    try:
        return _describe_cryptography(pem)
    except ImportError:
        return _describe_stdlib(pem)


def _describe_cryptography(pem: str) -> CertificateInfo:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem.encode())
    names: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names.extend(str(n.value) for n in san if isinstance(n, x509.DNSName | x509.IPAddress))
    subject = cert.subject.rfc4514_string()
    issuer = cert.issuer.rfc4514_string()
    return CertificateInfo(
        subject=subject,
        issuer=issuer,
        names=tuple(names),
        not_after=cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC"),
        self_signed=subject == issuer,
    )


_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
}


def _name(rdns: Iterable[Any]) -> str:
    parts = [f"{_SHORT.get(key, key)}={value}" for rdn in rdns for key, value in rdn]
    return ",".join(reversed(parts))  # RFC 4514 order, as cryptography prints it


def _describe_stdlib(pem: str) -> CertificateInfo:
    """CPython's own decoder (the one ``ssl`` uses for ``getpeercert``); it reads a file."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:  # another Python implementation: say what we can
        return CertificateInfo(subject="(not decoded)", issuer="(not decoded: install 'cryptography')")
    fd, tmp = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
        info: dict[str, Any] = decode(tmp)
    finally:
        os.unlink(tmp)
    subject = _name(info.get("subject", ()))
    issuer = _name(info.get("issuer", ()))
    names = tuple(
        str(value) for kind, value in info.get("subjectAltName", ()) if kind in ("DNS", "IP Address")
    )
    return CertificateInfo(
        subject=subject,
        issuer=issuer,
        names=names,
        not_after=str(info.get("notAfter", "")),
        self_signed=subject == issuer,
    )


# ------------------------------------------------------------------------------ candidates


def _kubeconfig_paths(environ: Mapping[str, str]) -> list[Path]:
    if environ.get("KUBECONFIG"):
        return [Path(p) for p in environ["KUBECONFIG"].split(os.pathsep) if p]
    home = environ.get("HOME")
    base = Path(home) if home else Path.home()
    return [base / ".kube" / "config"]


def _kubeconfig_cas(path: Path, host: str) -> list[CACandidate]:
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError, UnicodeDecodeError):
        return []
    if not isinstance(data, dict):
        return []
    found: list[CACandidate] = []
    for entry in data.get("clusters") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("cluster"), dict):
            continue
        cluster = entry["cluster"]
        name = str(entry.get("name") or "")
        server_host, _ = host_port(str(cluster.get("server") or ""))
        label = f"kubeconfig {path}, cluster {name!r} (server {cluster.get('server', '')})"
        ranked = server_host == host
        candidate: CACandidate | None = None
        if cluster.get("certificate-authority-data"):
            try:
                pem = base64.b64decode(str(cluster["certificate-authority-data"])).decode()
            except (binascii.Error, UnicodeDecodeError):
                continue
            candidate = CACandidate(label, pem=pem, kubeconfig=str(path), cluster=name)
        elif cluster.get("certificate-authority"):
            ca_path = Path(str(cluster["certificate-authority"]))
            if not ca_path.is_absolute():
                ca_path = path.parent / ca_path
            candidate = CACandidate(label, path=str(ca_path), kubeconfig=str(path), cluster=name)
        if candidate is not None:
            found.insert(0 if ranked else len(found), candidate)
    return found


def ca_candidates(
    url: str,
    *,
    configured: str = "",
    environ: Mapping[str, str] | None = None,
    well_known: Sequence[Path] = WELL_KNOWN_CA_FILES,
) -> list[CACandidate]:
    """Every CA bundle worth trying for ``url``: ca_file, well-known files, kubeconfig clusters."""
    env = dict(os.environ) if environ is None else environ
    host, _ = host_port(url)
    out: list[CACandidate] = []
    if configured:
        out.append(CACandidate(f"ca_file {configured}", path=configured))
    for path in well_known:
        if str(path) != configured and path.is_file():
            out.append(CACandidate(str(path), path=str(path)))
    for kubeconfig in _kubeconfig_paths(env):
        if kubeconfig.is_file():
            out.extend(_kubeconfig_cas(kubeconfig, host))
    return out


def _handshake(host: str, port: int, candidate: CACandidate) -> bool:
    try:
        if candidate.path:
            context = ssl.create_default_context(cafile=candidate.path)
        else:
            context = ssl.create_default_context(cadata=candidate.pem)
    except (OSError, ssl.SSLError, ValueError):
        return False
    context.check_hostname = False  # trust only; a wrong host name is reported on its own
    try:
        with (
            socket.create_connection((host, port), timeout=_TIMEOUT) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


async def trusted_by(url: str, candidates: Sequence[CACandidate]) -> CACandidate | None:
    """The first candidate whose CA makes the handshake with ``url`` succeed, else None."""
    host, port = host_port(url)
    for candidate in candidates:
        if await asyncio.to_thread(_handshake, host, port, candidate):
            return candidate
    return None
