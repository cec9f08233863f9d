"""AWS Signature Version 4 presigned URLs for S3-compatible cache storage.

The runner presigns a GET and a PUT per cache key and hands the URLs to the
helper, so the job never sees storage credentials. URLs are path-style
(``https://endpoint/bucket/key``), which MinIO and other S3-compatible
servers accept whatever their DNS setup. ``presign_url`` signs any URL and is
checked against the example in AWS's documentation.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

__all__ = ["MAX_EXPIRES_S", "path_style_url", "presign", "presign_url"]

MAX_EXPIRES_S = 7 * 24 * 3600  # SigV4's limit for presigned URLs
_ALGORITHM = "AWS4-HMAC-SHA256"


def _uri_encode(value: str) -> str:
    # RFC 3986 unreserved characters stay; everything else, "/" included, is %XX-encoded.
    return quote(value, safe="-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _canonical_host(scheme: str, netloc: str) -> str:
    """The Host header as the HTTP client sends it: lower case, default port left out."""
    hostport = netloc.rpartition("@")[2].lower()
    if hostport.startswith("["):
        host, _, rest = hostport.partition("]")
        host, port = host + "]", rest.removeprefix(":")
    else:
        host, _, port = hostport.partition(":")
    default = {"https": "443", "http": "80"}.get(scheme.lower())
    return host if not port or port == default else f"{host}:{port}"


def path_style_url(*, endpoint: str, bucket: str, key: str, insecure: bool) -> str:
    """``scheme://endpoint/bucket/key`` with the key's path segments URI-encoded.

    ``endpoint`` is gitlab-runner's ``ServerAddress`` (``host[:port]``); a full
    ``http(s)://`` URL is accepted too and keeps its scheme.
    """
    if not bucket:
        raise ValueError("an S3 bucket name is required")
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        scheme, netloc = parts.scheme, parts.netloc
    else:
        scheme, netloc = ("http" if insecure else "https"), endpoint
    netloc = netloc.rstrip("/")
    if not netloc:
        raise ValueError("an S3 endpoint (host[:port]) is required")
    path = "/" + _uri_encode(bucket) + "/" + "/".join(_uri_encode(seg) for seg in key.lstrip("/").split("/"))
    return urlunsplit((scheme, netloc, path, "", ""))


def presign_url(
    method: str,
    url: str,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    expires_s: int,
    at: datetime,
    session_token: str | None = None,
    service: str = "s3",
) -> str:
    """Add SigV4 query authentication to ``url`` (path already URI-encoded), as signed at ``at``."""
    if not 1 <= expires_s <= MAX_EXPIRES_S:
        raise ValueError(f"expires_s must be between 1 and {MAX_EXPIRES_S} seconds, got {expires_s}")
    if not access_key or not secret_key:
        raise ValueError("S3 presigning needs an access key and a secret key")
    parts = urlsplit(url)
    stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    params = parse_qsl(parts.query, keep_blank_values=True)
    params += [
        ("X-Amz-Algorithm", _ALGORITHM),
        ("X-Amz-Credential", f"{access_key}/{scope}"),
        ("X-Amz-Date", stamp),
        ("X-Amz-Expires", str(expires_s)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    if session_token:
        params.append(("X-Amz-Security-Token", session_token))
    query = "&".join(f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(params))
    canonical_request = "\n".join(
        [
            method.upper(),
            parts.path or "/",
            query,
            f"host:{_canonical_host(parts.scheme, parts.netloc)}\n",
            "host",
            "UNSIGNED-PAYLOAD",
        ]
    )
    string_to_sign = "\n".join(
        [_ALGORITHM, stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret_key).encode(), stamp[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return urlunsplit(
        (parts.scheme, parts.netloc, parts.path or "/", f"{query}&X-Amz-Signature={signature}", "")
    )


def presign(
    method: str,
    *,
    endpoint: str,
    bucket: str,
    key: str,
    access_key: str,
    secret_key: str,
    region: str,
    expires_s: int,
    insecure: bool,
    session_token: str | None = None,
) -> str:
    """A path-style presigned URL for ``method`` (GET or PUT) on ``bucket/key``, valid ``expires_s``."""
    url = path_style_url(endpoint=endpoint, bucket=bucket, key=key, insecure=insecure)
    return presign_url(
        method,
        url,
        access_key=access_key,
        secret_key=secret_key,
        region=region or "us-east-1",
        expires_s=expires_s,
        at=datetime.now(UTC),
        session_token=session_token,
    )
