"""SigV4 presigning, proven against AWS's published example and a signature-checking S3 double."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from helper_doubles import FakeS3

from kuberunner.helper.s3 import path_style_url, presign, presign_url


def test_presign_url_reproduces_the_aws_documentation_example() -> None:
    # "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)", Amazon S3 API
    # Reference: GET examplebucket/test.txt, 2013-05-24T00:00:00Z, 86400 s, us-east-1.
    url = presign_url(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        expires_s=86400,
        at=datetime(2013, 5, 24, tzinfo=UTC),
    )

    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z"
        "&X-Amz-Expires=86400"
        "&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


def test_path_style_urls_encode_the_key_and_pick_the_scheme() -> None:
    assert (
        path_style_url(
            endpoint="minio:9000", bucket="cache", key="runner/x/project/42/key 1/cache.zip", insecure=True
        )
        == "http://minio:9000/cache/runner/x/project/42/key%201/cache.zip"
    )
    assert path_style_url(endpoint="s3.amazonaws.com", bucket="b", key="k", insecure=False) == (
        "https://s3.amazonaws.com/b/k"
    )
    assert path_style_url(endpoint="https://store.example:8443/", bucket="b", key="/k", insecure=True) == (
        "https://store.example:8443/b/k"
    )


def test_a_session_token_is_part_of_the_signed_query() -> None:
    url = presign_url(
        "PUT",
        "https://s3.example/b/k",
        access_key="AK",
        secret_key="SK",
        region="eu-west-1",
        expires_s=60,
        at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        session_token="tok/en+1",
    )
    query = parse_qs(urlsplit(url).query)

    assert query["X-Amz-Security-Token"] == ["tok/en+1"]
    assert query["X-Amz-Credential"] == ["AK/20240102/eu-west-1/s3/aws4_request"]
    assert "X-Amz-Security-Token=tok%2Fen%2B1" in url


@pytest.mark.parametrize("expires_s", [0, 7 * 24 * 3600 + 1])
def test_expiry_outside_sigv4_limits_is_refused(expires_s: int) -> None:
    with pytest.raises(ValueError, match="expires_s must be between 1 and 604800"):
        presign_url(
            "GET",
            "https://s3.example/b/k",
            access_key="AK",
            secret_key="SK",
            region="us-east-1",
            expires_s=expires_s,
            at=datetime.now(UTC),
        )


def test_presigned_put_and_get_are_accepted_by_a_signature_checking_store(s3: FakeS3) -> None:
    def sign(method: str) -> str:
        return presign(
            method,
            endpoint=s3.endpoint,
            bucket=s3.bucket,
            key="project/42/deps main/cache.zip",
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            region="us-east-1",
            expires_s=300,
            insecure=True,
        )

    put, get = sign("PUT"), sign("GET")

    assert httpx.put(put, content=b"zip bytes").status_code == 200
    fetched = httpx.get(get)
    assert (fetched.status_code, fetched.content) == (200, b"zip bytes")
    tampered = get.replace("X-Amz-Expires=300", "X-Amz-Expires=301")
    assert b"SignatureDoesNotMatch" in httpx.get(tampered).content
    # Like S3, the store refuses a chunked PUT, so the cache tests prove the helper sends a length.
    chunked = httpx.put(put, content=iter([b"zip ", b"bytes"]))
    assert (chunked.status_code, b"MissingContentLength" in chunked.content) == (411, True)
