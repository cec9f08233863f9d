"""No secret from config.toml ever reaches the output of a config command, an error or a repr."""

from __future__ import annotations

import io
import textwrap
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from kuberunner.cli import main
from kuberunner.config import ConfigError, load_config
from kuberunner.config.show import redact_env, redact_url, render_effective

GOOD = Path(__file__).parent / "good"

RUNNER_TOKEN = "glrt-TOPSECRETrunnerTOKEN9"
BEARER = "eyJTOPSECRETbearer.token.value"
ACCESS, SECRET_KEY = "TOPSECRETaccess", "TOPSECRETsecretKey"
ENV_PASSWORD = "TOPSECRETpassw0rd"
URL_PASSWORD = "TOPSECRETurlpass"
DOCKER_PASSWORD = "TOPSECRETdockerpass"
ALL = (RUNNER_TOKEN, BEARER, ACCESS, SECRET_KEY, ENV_PASSWORD, URL_PASSWORD, DOCKER_PASSWORD, "TOPSECRET")

VALID = f"""\
concurrent = 2

[[runners]]
  name = "secrets"
  url = "https://ci:{URL_PASSWORD}@gitlab.example.com/"
  token = "{RUNNER_TOKEN}"
  executor = "kubernetes"
  environment = ["DB_PASSWORD={ENV_PASSWORD}", "GIT_DEPTH=10", "MY_API_KEY={ENV_PASSWORD}2"]
  [runners.cache]
    Type = "s3"
    [runners.cache.s3]
      ServerAddress = "minio.example.com"
      BucketName = "cache"
      AccessKey = "{ACCESS}"
      SecretKey = "{SECRET_KEY}"
  [runners.kubernetes]
    namespace = "gitlab"
    bearer_token = "{BEARER}"
  [runners.docker]
    image = "alpine"
    registry_password = "{DOCKER_PASSWORD}"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text))
    return path


def _outputs(path: Path) -> list[str]:
    runner = CliRunner()
    results = [
        runner.invoke(main, ["config", "check", str(path)]),
        runner.invoke(main, ["config", "check", "--format", "json", str(path)]),
        runner.invoke(main, ["config", "show", "-c", str(path)]),
    ]
    return [r.output for r in results]


def _assert_clean(texts: list[str]) -> None:
    for text in texts:
        for value in ALL:
            assert value not in text, f"{value!r} leaked into:\n{text}"


def test_show_redacts_every_kind_of_secret(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID)
    result = CliRunner().invoke(main, ["config", "show", "-c", str(path)])
    assert result.exit_code == 0, result.output
    shown = tomllib.loads(result.stdout)
    runner = shown["runners"][0]
    assert runner["token"] == "[REDACTED]"
    assert runner["url"] == "https://ci:[REDACTED]@gitlab.example.com/"
    assert runner["environment"] == ["DB_PASSWORD=[REDACTED]", "GIT_DEPTH=10", "MY_API_KEY=[REDACTED]"]
    assert runner["cache"]["s3"]["AccessKey"] == runner["cache"]["s3"]["SecretKey"] == "[REDACTED]"
    assert runner["kubernetes"]["bearer_token"] == "[REDACTED]"
    assert runner["docker"] == {"image": "alpine", "registry_password": "[REDACTED]"}
    # names that merely contain "secret" are not secrets
    assert runner["kubernetes"]["image_pull_secrets"] == []
    _assert_clean(_outputs(path))


@pytest.mark.parametrize(
    "body",
    [
        # wrongly typed secrets: the message names the type, never the value
        'token = ["TOPSECRETinAnArray"]',
        "token = 123456789",
        '[runners.kubernetes]\n  bearer_token = ["TOPSECRETbearer"]',
        '[runners.cache.s3]\n  SecretKey = { value = "TOPSECRETinline" }',
        # a secret-looking variable without "=": the whole entry may be the secret
        'environment = ["TOPSECRET_NO_EQUALS_SIGN"]',
        # an unknown key's value is never shown
        'tokn = "TOPSECRETtypo"',
        '[runners.kubernetes]\n  bearer_tokn = "TOPSECRETtypo"',
        # the token pasted where it does not belong: the safety net still hides it
        f'url = "{RUNNER_TOKEN}"\n  token = "{RUNNER_TOKEN}"',
        f'token = "{RUNNER_TOKEN}"\n  [runners.kubernetes]\n  image = ["{RUNNER_TOKEN}"]\n'
        f'  cpu_limit = "{RUNNER_TOKEN}"',
    ],
)
def test_errors_about_secret_keys_never_show_the_value(tmp_path: Path, body: str) -> None:
    path = _write(tmp_path, f'[[runners]]\n  name = "x"\n  executor = "kubernetes"\n  {body}\n')
    outputs = _outputs(path)
    assert "error" in outputs[0]
    _assert_clean(outputs)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    _assert_clean([str(caught.value), repr(caught.value), *(repr(p) for p in caught.value.problems)])


def test_loaded_config_repr_holds_no_secret(tmp_path: Path) -> None:
    loaded = load_config(_write(tmp_path, VALID))
    _assert_clean([repr(loaded), str(loaded), render_effective(loaded)])
    # the schema's own reprs hide credentials too (a password inside a URL is the one thing they show)
    reprs = [repr(loaded.config), repr(loaded.config.runners[0])]
    _assert_clean([r.replace(URL_PASSWORD, "") for r in reprs])


def test_the_seed_bearer_token_never_appears(tmp_path: Path) -> None:
    seed = (GOOD / "seed.toml").read_text()
    token = tomllib.loads(seed)["runners"][0]["kubernetes"]["bearer_token"]
    for output in _outputs(GOOD / "seed.toml"):
        assert token not in output
        assert "glrt-FAKEseedtoken" not in output


def test_colour_output_on_a_terminal_holds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, '[[runners]]\n  name = "x"\n  token = 42\n  url = "https://g.example.com"\n')

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    monkeypatch.setattr("sys.stdout", out)
    with pytest.raises(SystemExit) as caught:
        main.main(["config", "check", str(path)], standalone_mode=False)
    assert caught.value.code == 1
    text = out.getvalue()
    assert "\x1b[" in text  # rich colours on a terminal
    assert "runners.token" in text and "expected a string, got an integer" in text
    assert "42" not in text.replace(str(path), "")


def test_redaction_helpers() -> None:
    assert redact_env("GITLAB_TOKEN=abc") == "GITLAB_TOKEN=[REDACTED]"
    assert redact_env("SSH_PRIVATE_KEY=abc") == "SSH_PRIVATE_KEY=[REDACTED]"
    assert redact_env("GIT_DEPTH=10") == "GIT_DEPTH=10"
    assert redact_env("EMPTY_PASSWORD=") == "EMPTY_PASSWORD="
    assert redact_url("https://u:p4ss@host/x") == "https://u:[REDACTED]@host/x"
    assert redact_url("https://host:443/x") == "https://host:443/x"
