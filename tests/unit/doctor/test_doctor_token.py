"""Bearer tokens: facts read from a JWT without verifying it, and never the token itself."""

from __future__ import annotations

import base64
import json
from typing import Any

from kuberunner.doctor.token import describe_token, expiry_text, service_account_of, token_facts

NOW = 1_800_000_000.0


def jwt(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part(header or {'alg': 'RS256', 'kid': 'k'})}.{part(claims)}.c2lnbmF0dXJl"


BOUND = {  # what `kubectl create token gitlab-runner -n gitlab` gives (TokenRequest)
    "aud": ["https://kubernetes.default.svc.cluster.local"],
    "exp": NOW + 10 * 86400,
    "iat": NOW - 3600,
    "iss": "https://kubernetes.default.svc.cluster.local",
    "kubernetes.io": {"namespace": "gitlab", "serviceaccount": {"name": "gitlab-runner", "uid": "u"}},
    "sub": "system:serviceaccount:gitlab:gitlab-runner",
}
LEGACY = {  # a kubernetes.io/service-account-token Secret's token: no exp
    "iss": "kubernetes/serviceaccount",
    "kubernetes.io/serviceaccount/namespace": "ci",
    "kubernetes.io/serviceaccount/secret.name": "kr-token",
    "kubernetes.io/serviceaccount/service-account.name": "kr",
    "sub": "system:serviceaccount:ci:kr",
}


def test_bound_token_claims() -> None:
    facts = token_facts(jwt(BOUND))
    assert facts.is_jwt
    assert (facts.namespace, facts.service_account) == ("gitlab", "gitlab-runner")
    assert facts.subject == "system:serviceaccount:gitlab:gitlab-runner"
    assert facts.expires_at == NOW + 10 * 86400
    assert expiry_text(facts, NOW) == "expires 2027-01-25 08:00 UTC (in 10 days)"


def test_expired_token_says_how_long_ago() -> None:
    facts = token_facts(jwt({**BOUND, "exp": NOW - 3 * 86400}))
    assert expiry_text(facts, NOW) == "expired 2027-01-12 08:00 UTC (3 days ago)"


def test_legacy_secret_token_has_no_expiry() -> None:
    facts = token_facts(jwt(LEGACY))
    assert (facts.namespace, facts.service_account, facts.expires_at) == ("ci", "kr", None)
    assert "no expiry" in expiry_text(facts, NOW)


def test_placeholders_are_not_jwts() -> None:
    for text in ("先随便写一个", "changeme", "a.b", "e30.!!!.x", "", "eyJhbGciOiJub25lIn0.W10.x"):
        facts = token_facts(text)
        assert not facts.is_jwt, text
    assert describe_token("changeme") == (
        "the token is not a JWT (8 characters): not a Kubernetes ServiceAccount token, perhaps a placeholder"
    )


def test_description_never_contains_the_token() -> None:
    token = jwt(BOUND)
    text = describe_token(token, NOW)
    assert token not in text and token.split(".")[1] not in text
    assert text.startswith(
        "JWT for system:serviceaccount:gitlab:gitlab-runner, issuer https://kubernetes.default"
    )
    assert token not in repr(token_facts(token))


def test_service_account_of_username() -> None:
    assert service_account_of("system:serviceaccount:gitlab:gitlab-runner") == ("gitlab", "gitlab-runner")
    assert service_account_of("system:anonymous") == ("", "")
    assert service_account_of("kubernetes-admin") == ("", "")
