"""Reading the settings: a per-environment TOML file with ``TRIBUTARY_*`` variables on top.

Every setting has one flat name. The TOML key is that name (``http_port = 8080``) and the
environment variable is the name upper-cased behind the prefix (``TRIBUTARY_HTTP_PORT``), so
an operator can move any value between the two without translating it. Secrets are accepted
from the environment only. Any problem stops the process with one message that names each
offending setting, where it came from, and its value (secrets and passwords masked).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from service.config.settings import DEFAULT_ENV, SECRET_SETTINGS, Settings
from service.errors import ConfigError
from service.observability import Redactor

MASK_URL_PASSWORDS = Redactor()  # user:password@ in a URL someone mistyped

ENV_PREFIX = "TRIBUTARY_"
# Chooses the configuration file rather than setting a value in it.
META_VARIABLES = frozenset({"TRIBUTARY_CONFIG"})
CONFIG_DIR = Path("config")


def env_var(name: str) -> str:
    """The environment variable that sets a setting."""
    return ENV_PREFIX + name.upper()


def config_path(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The TOML file to read: ``--config``, ``TRIBUTARY_CONFIG``, else ``config/<env>.toml``."""
    from_env = environ.get("TRIBUTARY_CONFIG")
    chosen = explicit or (Path(from_env) if from_env else None)
    if chosen is not None:
        if not chosen.is_file():
            raise ConfigError(f"configuration file {chosen} does not exist")
        return chosen
    env = environ.get("TRIBUTARY_ENV")
    candidate = CONFIG_DIR / f"{env or DEFAULT_ENV}.toml"
    if candidate.is_file():
        return candidate
    if env is not None:  # asked for by name: a typo must not fall back to the defaults
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.toml")) if CONFIG_DIR.is_dir() else []
        raise ConfigError(
            f"TRIBUTARY_ENV={env} but {candidate} does not exist: create it (it may be empty) "
            f"or choose one of: {', '.join(known) or 'none here'}"
        )
    return None


def load_settings(
    explicit_config: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings: defaults < TOML file < ``overrides`` < environment."""
    environ = os.environ if environ is None else environ
    path = config_path(explicit_config, environ)
    values: dict[str, Any] = _read_toml(path) if path else {}
    values.update(overrides or {})
    values.update(_read_environment(environ))
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, environ)) from None


def _read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    known = {env_var(name): name for name in Settings.model_fields}
    values: dict[str, Any] = {}
    unknown = []
    for variable, raw in environ.items():
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper in META_VARIABLES:
            continue
        if upper not in known:
            unknown.append(variable)
            continue
        # Lists and tables arrive as JSON; scalars are coerced by the model. Secrets stay
        # text (a JSON secret is parsed where it is used), so they never leak in a repr.
        name = known[upper]
        try:
            values[name] = (
                orjson.loads(raw) if raw[:1] in ("[", "{") and name not in SECRET_SETTINGS else raw
            )
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"environment variable {variable}: not valid JSON: {exc}") from None
    if unknown:
        raise ConfigError(
            "\n".join(
                f"unknown environment variable {name}"
                f"{_did_you_mean(name.upper().removeprefix(ENV_PREFIX).lower(), env=True)}"
                for name in sorted(unknown)
            )
        )
    return values


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    problems = []
    for key in values:
        if key in SECRET_SETTINGS:
            problems.append(f"{path}: {key!r} is a secret: set {env_var(key)} in the environment")
        elif key not in Settings.model_fields:
            problems.append(f"{path}: unknown setting {key!r}{_did_you_mean(key)}")
    if problems:
        raise ConfigError("\n".join(problems))
    return values


def _did_you_mean(key: str, env: bool = False) -> str:
    match = difflib.get_close_matches(key.lower(), Settings.model_fields, n=1)
    if not match:
        return ""
    return f" (did you mean {env_var(match[0]) if env else repr(match[0])}?)"


def _describe(exc: ValidationError, path: Path | None, environ: Mapping[str, str]) -> str:
    lines = []
    for error in exc.errors():
        if not error["loc"]:  # a rule across settings: its message names them
            lines.append(error["msg"].removeprefix("Value error, "))
            continue
        name = str(error["loc"][0])
        variable = env_var(name)
        if variable in environ:
            origin = f"from environment variable {variable}"
        elif path is not None:
            origin = f"from {path} (or set {variable})"
        else:
            origin = f"set {variable} or {name!r} in config/<env>.toml"
        message = error["msg"]
        if name in SECRET_SETTINGS:
            pass  # a secret's value is never repeated, not even a wrong one
        elif error["type"] != "missing" and "input" in error:
            message += f", got {MASK_URL_PASSWORDS.text(repr(error['input']))}"
        if error["type"] == "missing":
            message = "is required and not set"
        lines.append(f"setting {name!r} {message} ({origin})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def settings_reference() -> str:
    """The Markdown table of every setting (docs/configuration.md is kept equal to it)."""
    rows = ["| variable (TOML key) | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        if field.is_required():
            default = "**required**"
        elif field.default_factory is not None:
            default = "computed"
        else:
            default = f"`{field.default}`" if field.default is not None else "unset"
        rows.append(f"| `{env_var(name)}` (`{name}`) | {default} | {field.description} |")
    return "\n".join(rows) + "\n"
