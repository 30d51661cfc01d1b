"""Generate the environment variable tables of deploy/README.md from the services' Settings classes.

    python scripts/gen_env_docs.py          # rewrite the tables in deploy/README.md
    python scripts/gen_env_docs.py --check  # exit 1 when deploy/README.md is out of date

The tables sit between `<!-- BEGIN env:SERVICE -->` and `<!-- END env:SERVICE -->` markers; everything
else in the README is left alone. tests/test_deploy.py uses `env_vars()` to check that compose.yml and the
Kubernetes manifests set only variables that a service reads.
"""

from __future__ import annotations

import argparse
import ast
import enum
import importlib
import inspect
import re
import sys
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "deploy" / "README.md"

# service name -> "module:Class" of its settings
SERVICES = {
    "roster-api": "roster_api.settings:Settings",
    "sso-gateway": "sso_gateway.settings:Settings",
}

# For settings whose class carries no comment or description: what an operator needs to know.
DESCRIPTIONS = {
    "ROSTER_ENVIRONMENT": "`production` refuses development placeholder secrets",
    "ROSTER_DATABASE_URL": "SQLAlchemy URL: `sqlite:///path` or `postgresql+psycopg://user:pass@host/db`",
    "ROSTER_DB_POOL_SIZE": "connections per process (PostgreSQL)",
    "ROSTER_DATA_DIR": "uploads, result files, SFTP host key; shared by api, worker, sftp and nightly",
    "ROSTER_HOST": "`serve` binds here",
    "ROSTER_PORT": "`serve` listens here",
    "ROSTER_LOG_LEVEL": "`DEBUG`, `INFO`, `WARNING`, `ERROR`",
    "ROSTER_MAX_UPLOAD_BYTES": "largest CSV accepted over HTTPS (413 above)",
    "ROSTER_UPLOAD_RETENTION_DAYS": "uploaded files are deleted after this many days",
    "ROSTER_RUN_WORKER": "run the import worker inside `serve` (single-machine setups)",
    "ROSTER_RUN_SCHEDULER": "run the nightly scheduler inside `serve` (single-machine setups)",
    "ROSTER_WORKER_POLL_SECONDS": (
        "how often an idle worker looks for queued imports (one queued through its own process wakes it)"
    ),
    "ROSTER_IMPORT_LEASE_SECONDS": "an import whose worker stopped heartbeating this long is taken over",
    "ROSTER_SFTP_HOST": "`sftp` binds here",
    "ROSTER_SFTP_PORT": "`sftp` listens here",
    "ROSTER_SFTP_MAX_FILE_BYTES": "largest file a district may upload by SFTP",
    "ROSTER_SFTP_QUOTA_BYTES": "total bytes a district may keep in its SFTP folder",
    "ROSTER_SFTP_LOGIN_TIMEOUT_SECONDS": "time to authenticate before the connection is closed",
    "ROSTER_SFTP_IDLE_TIMEOUT_SECONDS": "an idle SFTP connection is closed after this",
    "ROSTER_SFTP_MAX_SESSIONS_PER_USER": "concurrent SFTP sessions per district login (per replica)",
    "ROSTER_SFTP_LOCKOUT_SECONDS": "first pause after too many failed logins",
    "ROSTER_NIGHTLY_POLL_SECONDS": "how often the in-process scheduler checks whose nightly time has come",
    "ROSTER_RESOLVE_POOL_MAX": "upper bound of that pool",
    "ROSTER_RESOLVE_RATE_BURST": "burst allowance of that limit",
    "SSO_ENVIRONMENT": "`production`: https URLs, real secrets and signing keys, `__Host-` secure cookies",
    "SSO_ISSUER": "the gateway's public base URL; the OIDC issuer",
    "SSO_HOST": "`serve` binds here",
    "SSO_PORT": "`serve` listens here",
    "SSO_DATA_DIR": "development signing key and the SQLite session store",
    "SSO_LOG_LEVEL": "`DEBUG`, `INFO`, `WARNING`, `ERROR`",
    "SSO_CLEVER_AUTHORIZE_URL": "Clever's authorize endpoint (the simulator's in development)",
    "SSO_CLEVER_TOKEN_URL": "Clever's token endpoint",
    "SSO_CLEVER_API_URL": "Clever's API base (`/v3.0/me`, `/v3.0/users/{id}`)",
    "SSO_CLEVER_TIMEOUT_SECONDS": "timeout of each call to Clever",
    "SSO_OUTBOUND_TRANSPORT": "`lean` (keep-alive HTTP/1.1, little CPU) or `httpx` (proxies; a fallback)",
    "SSO_ROSTER_API_URL": "roster-api base URL",
    "SSO_ROSTER_API_KEY": "a roster-api key with scope `resolve`",
    "SSO_ROSTER_API_TIMEOUT_SECONDS": "timeout of each call to roster-api",
    "SSO_ROCKETLIT__DISPLAY_NAME": "shown on the login and error pages",
    "SSO_ROCKETLIT__CLEVER_CLIENT_ID": "RocketLit's Clever app",
    "SSO_ROCKETLIT__CLEVER_CLIENT_SECRET": "RocketLit's Clever app secret",
    "SSO_ROCKETLIT__CLIENTS": "JSON list of RocketLit's OIDC clients (see above)",
    "SSO_INNERORBIT__DISPLAY_NAME": "shown on the login and error pages",
    "SSO_INNERORBIT__CLEVER_CLIENT_ID": "InnerOrbit's Clever app",
    "SSO_INNERORBIT__CLEVER_CLIENT_SECRET": "InnerOrbit's Clever app secret",
    "SSO_INNERORBIT__CLIENTS": "JSON list of InnerOrbit's OIDC clients (see above)",
    "SSO_SIGNING_KEY": "one PEM private key given inline (instead of files)",
    "SSO_REDIS_URL": "`redis://` or `rediss://` URL of the shared session store (needed for replicas)",
    "SSO_REDIS_PREFIX": "key prefix in Redis",
    "SSO_SESSION_IDLE_SECONDS": "a session unused this long ends",
    "SSO_SESSION_ABSOLUTE_SECONDS": "a session ends this long after login, used or not",
    "SSO_STATE_SECONDS": "lifetime of a login's state (at most 10 minutes)",
    "SSO_CODE_SECONDS": "lifetime of an authorization code issued to a frontend",
    "SSO_ID_TOKEN_SECONDS": "lifetime of ID tokens",
    "SSO_ACCESS_TOKEN_SECONDS": "lifetime of access tokens (for `/userinfo`)",
    "SSO_RESTART_GUARD_SECONDS": "Instant Login loop guard: one restart per browser in this window",
}


@dataclass(frozen=True)
class EnvVar:
    name: str  # upper case; `<KEY>` stands for a free-form mapping key
    default: str
    type: str
    secret: bool
    description: str

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.escape(self.name).replace(re.escape("<KEY>"), "[A-Z0-9_-]+") + "$")


def load_settings(service: str) -> type[BaseSettings] | None:
    """The Settings class of a service, or None when that service is not installed (yet)."""
    module_name, _, class_name = SERVICES[service].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return None
    settings_cls = getattr(module, class_name, None)
    return settings_cls if isinstance(settings_cls, type) and issubclass(settings_cls, BaseSettings) else None


def _field_comments(cls: type) -> dict[str, str]:
    """The `#` comment block right above each field in the class body: that is where this codebase
    explains its settings."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments: dict[str, str] = {}
    class_def = ast.parse(source).body[0]
    if not isinstance(class_def, ast.ClassDef):
        return {}
    for node in class_def.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            block: list[str] = []
            index = node.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#"):
                line = lines[index].strip().lstrip("#").strip()
                # `# --- SFTP intake ---` names a block of fields, not this one.
                if not line.startswith("---"):
                    block.insert(0, line)
                index -= 1
            if block:
                comments[node.target.id] = " ".join(block)
    return comments


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _type_name(annotation: Any) -> str:
    annotation = _unwrap_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{member.value}`" for member in annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    if annotation is SecretStr:
        return "secret"
    name = getattr(annotation, "__name__", None)
    if isinstance(name, str) and not typing.get_args(annotation):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(name, name)
    return "JSON"


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "*required*"
    value = field.get_default(call_default_factory=True)
    if value is None or value is PydanticUndefined:
        return "*unset*"
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return "*unset*" if not secret else "*development placeholder*"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, BaseModel):
        return "`" + value.model_dump_json() + "`"
    if isinstance(value, dict | list | tuple) and not value:
        return "*empty*"
    if isinstance(value, dict | list | tuple):
        return "*see nested variables*"
    text = str(value)
    return f"`{text}`" if text else '`""`'


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _collect(
    model: type[BaseModel], prefix: str, delimiter: str | None, out: list[EnvVar], *, settings_root: bool
) -> None:
    comments = _field_comments(model)
    for name, field in model.model_fields.items():
        env_name = prefix + name.upper()
        # pydantic-settings reads an aliased top-level field by its alias alone, without the prefix.
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        if alias:
            env_name = alias.upper() if settings_root else prefix + alias.upper()
        annotation = _unwrap_optional(field.annotation)
        description = (field.description or comments.get(name, "")).replace("|", "\\|")
        origin = typing.get_origin(annotation)
        secret = annotation is SecretStr
        if delimiter and _is_model(annotation):
            out.append(EnvVar(env_name, _default(field), "JSON", False, description or "the whole object"))
            _collect(annotation, env_name + delimiter, delimiter, out, settings_root=False)
            continue
        if delimiter and origin is dict and _is_model(typing.get_args(annotation)[1]):
            key_type, value_model = typing.get_args(annotation)
            out.append(EnvVar(env_name, _default(field), "JSON", False, description or "the whole mapping"))
            if isinstance(key_type, type) and issubclass(key_type, enum.Enum):
                keys = [str(member.value).upper() for member in key_type]
            else:
                keys = ["<KEY>"]
            for key in keys:
                _collect(
                    value_model, env_name + delimiter + key + delimiter, delimiter, out, settings_root=False
                )
            continue
        description = description or DESCRIPTIONS.get(env_name, "")
        out.append(EnvVar(env_name, _default(field), _type_name(field.annotation), secret, description))


def env_vars(settings_cls: type[BaseSettings]) -> list[EnvVar]:
    config = settings_cls.model_config
    prefix = str(config.get("env_prefix") or "").upper()
    delimiter = config.get("env_nested_delimiter") or None
    out: list[EnvVar] = []
    _collect(settings_cls, prefix, delimiter, out, settings_root=True)
    return out


def is_known(name: str, known: list[EnvVar]) -> bool:
    return any(var.pattern().match(name.upper()) for var in known)


def render_table(variables: list[EnvVar]) -> str:
    rows = ["| variable | default | type | what it does |", "|---|---|---|---|"]
    for var in variables:
        rows.append(f"| `{var.name}` | {var.default} | {var.type} | {var.description} |")
    return "\n".join(rows)


def render_readme(text: str) -> str:
    for service in SERVICES:
        begin, end = f"<!-- BEGIN env:{service} -->", f"<!-- END env:{service} -->"
        if begin not in text or end not in text:
            raise SystemExit(f"{README}: markers {begin} / {end} are missing")
        settings_cls = load_settings(service)
        if settings_cls is None:
            body = f"*{service} is not installed in this environment; run `make install`.*"
        else:
            body = render_table(env_vars(settings_cls))
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = f"{head}{begin}\n{body}\n{end}{tail}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if deploy/README.md is out of date")
    args = parser.parse_args(argv)
    current = README.read_text(encoding="utf-8")
    wanted = render_readme(current)
    if args.check:
        if wanted != current:
            print("deploy/README.md is out of date: run `python scripts/gen_env_docs.py`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        README.write_text(wanted, encoding="utf-8")
        print("deploy/README.md updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
