"""``kuberunner config show``: the effective configuration, defaults filled in, secrets redacted.

Redaction is done twice: by the schema (every :func:`~.schema.secret` key and
every secret-looking variable or free-form key) and, as a safety net, by
replacing every credential value found in the file wherever it appears in
the output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import tomlkit
from pydantic import BaseModel

from kuberunner.config.load import (
    REDACTED,
    LoadedConfig,
    looks_secret,
    scrub,
    secret_values,
    unwrap_annotation,
)
from kuberunner.config.schema import KubernetesConfig, field_flags

__all__ = ["REDACTED", "effective_config", "redact_env", "redact_url", "render_effective"]

_URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:]*:)([^/@]+)(@)", re.IGNORECASE)


def redact_env(entry: str) -> str:
    """``PASSWORD=x`` -> ``PASSWORD=[REDACTED]``; other entries unchanged."""
    name, sep, value = entry.partition("=")
    if sep and value and looks_secret(name):
        return f"{name}={REDACTED}"
    return entry


def redact_url(url: str) -> str:
    """Hide the password of ``https://user:password@host``."""
    return _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(3), url)


def _free(value: Any, name: str = "") -> Any:
    """Redact inside a free-form value (executor tables kuberunner does not model)."""
    if isinstance(value, Mapping):
        return {k: _free(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_free(v, name) for v in value]
    if isinstance(value, str):
        if value and looks_secret(name):
            return REDACTED
        return redact_url(redact_env(value))
    return value


def _model(model: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue  # TOML has no null: an unset optional table is simply absent
        key = info.alias or name
        is_secret = field_flags(type(model), name)[1]
        if is_secret:
            out[key] = REDACTED if value else value
        elif name == "environment":
            out[key] = [redact_env(v) for v in value]
        elif isinstance(value, BaseModel):
            out[key] = _model(value)
        elif isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
            out[key] = [_model(v) for v in value]
        elif isinstance(value, str):
            out[key] = redact_url(value)
        elif unwrap_annotation(info.annotation)[0] == "free":
            out[key] = _free(value, key)
        else:
            out[key] = value
    return out


def effective_config(loaded: LoadedConfig) -> dict[str, Any]:
    """The configuration kuberunner uses, as plain data, with every secret redacted.

    A kubernetes runner without a ``[runners.kubernetes]`` table gets the
    table's defaults, since that is what it runs with.
    """
    config = loaded.config
    runners = [
        r.model_copy(update={"kubernetes": KubernetesConfig.model_validate({})})
        if r.executor == "kubernetes" and r.kubernetes is None
        else r
        for r in config.runners
    ]
    return _model(config.model_copy(update={"runners": runners}))


def _toml_table(data: Mapping[str, Any], table: Any) -> None:
    """Values first, then tables, then arrays of tables, so the TOML is valid and readable."""

    def kind(value: Any) -> int:
        if isinstance(value, Mapping):
            return 1
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            return 2
        return 0

    for key, value in sorted(data.items(), key=lambda kv: kind(kv[1])):
        k = kind(value)
        if k == 0:
            table.add(key, value)
        elif k == 1:
            sub = tomlkit.table()
            _toml_table(value, sub)
            table.add(key, sub)
        else:
            aot = tomlkit.aot()
            for element in value:
                sub = tomlkit.table()
                _toml_table(element, sub)
                aot.append(sub)
            table.add(key, aot)


def render_effective(loaded: LoadedConfig) -> str:
    """The effective configuration as TOML, secrets shown as ``[REDACTED]``."""
    doc = tomlkit.document()
    doc.add(
        tomlkit.comment(f"effective configuration of {loaded.path} (defaults filled in, secrets redacted)")
    )
    _toml_table(effective_config(loaded), doc)
    text = scrub(tomlkit.dumps(doc), secret_values(loaded.raw))
    return text if text.endswith("\n") else text + "\n"
