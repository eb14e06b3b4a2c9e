"""TOML configuration validated by pydantic, overridable by environment variables.

``FARMHAND_HUB__HTTP__PORT=9000`` overrides ``[http] port`` of the hub's file:
the prefix names the process, ``__`` separates nesting levels. Values are
parsed as TOML scalars when they can be (numbers, booleans), else kept as text.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """The configuration is invalid; the text names the file, key and problem."""


def _scalar(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_env(data: dict[str, Any], prefix: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    environ = dict(os.environ) if environ is None else environ
    head = prefix.upper() + "__"
    for key, raw in sorted(environ.items()):
        if not key.startswith(head):
            continue
        path = [p.lower() for p in key[len(head):].split("__") if p]
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {'.'.join(path)} is not a table in the config")
        node[path[-1]] = _scalar(raw)
    return data


def load(model: type[T], path: str | Path | None, env_prefix: str, environ: dict[str, str] | None = None) -> T:
    data: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{where}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    apply_env(data, env_prefix, environ)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ConfigError(f"{where}: {problems}") from None
