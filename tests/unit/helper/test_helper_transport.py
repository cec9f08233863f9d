"""Retry timing per the GitLab contract, and what may be printed of URLs and tokens."""

from __future__ import annotations

from email.utils import formatdate

import httpx
import pytest

from kuberunner.helper.transport import JobCredentials, RetryPolicy, clean_url, is_retryable, short_token

NOW = 1_700_000_000.0


def _policy() -> RetryPolicy:
    return RetryPolicy(clock=lambda: NOW)


def test_backoff_doubles_from_100ms_and_is_capped_at_60s() -> None:
    assert [_policy().delay(n) for n in (1, 2, 3, 4, 10, 20)] == [0.1, 0.2, 0.4, 0.8, 51.2, 60.0]


def test_ratelimit_resettime_wins_over_retry_after() -> None:
    response = httpx.Response(
        429, headers={"RateLimit-ResetTime": formatdate(NOW + 12, usegmt=True), "Retry-After": "3"}
    )

    assert _policy().delay(1, response) == 12.0


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("3", 3.0), (formatdate(NOW + 9, usegmt=True), 9.0), ("not a number", 0.1), ("100000", 600.0)],
)
def test_retry_after_in_seconds_or_as_a_date(retry_after: str, expected: float) -> None:
    assert _policy().delay(1, httpx.Response(503, headers={"Retry-After": retry_after})) == expected


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 512, 599])
def test_contract_retry_statuses(status: int) -> None:
    assert is_retryable(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422, 501, 505, 511])
def test_other_statuses_are_final(status: int) -> None:
    assert not is_retryable(status)


def test_short_token_never_shows_a_whole_token() -> None:
    assert short_token("glcbt-64_Zx9yQ2mN4kP7rT1vW3sA") == "64_Zx9yQ"
    assert short_token("glrt-abcdefghijklmnopqrstu") == "abcdefgh"
    assert short_token("short-token") == "[MASKED]"


def test_clean_url_drops_credentials_query_and_fragment() -> None:
    assert (
        clean_url("https://user:pw@s3.example:9000/b/k?X-Amz-Signature=abc#x")
        == "https://s3.example:9000/b/k"
    )


def test_credentials_repr_hides_the_token_and_api_base_follows_the_contract() -> None:
    creds = JobCredentials(url="https://gitlab.example/ci/", token="glcbt-secret-token-value", job_id=7)

    assert "secret" not in repr(creds)
    assert creds.artifacts_url() == "https://gitlab.example/api/v4/jobs/7/artifacts"
