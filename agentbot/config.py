"""Settings: the only place that reads the environment and the `env-workflows` file.

`Settings.from_environ(environ, env_file_text)` is pure: it takes the mapping and the file's text,
and raises `ConfigError` naming the first bad variable and how to fix it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from agentbot.destinations import Allowed
from agentbot.errors import ConfigError

DEFAULT_ENV_FILE = "env-workflows"
NOTHING_ALLOWED = Allowed()
DEFAULT_DB_NAME = "chatwoot_workflows"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")
# Variables of the system agentbot replaces that mean nothing here: reported by `agentbot doctor`
# (an old env-workflows keeps working unchanged) rather than silently ignored.
NOT_USED_PREFIX = "WHATSAPP_"
NOT_USED_REASON = (
    "WhatsApp goes through Chatwoot's WhatsApp inbox, agentbot never calls Meta: remove them"
)


class Secret:
    """A token whose repr never shows the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'**********'"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Settings:
    chatwoot_url: str | None = None
    chatwoot_api_token: Secret | None = None
    chatwoot_user_token: Secret | None = None
    chatwoot_webhook_secret: Secret | None = None
    webhook_token: Secret | None = None
    database_url: str | None = None  # None: the embedded PostgreSQL
    host: str = "0.0.0.0"
    port: int = 3001
    api_token: Secret | None = None
    metrics_token: Secret | None = None  # None: /metrics is off
    flows_dir: Path = Path("flows")
    log_level: str = "info"
    log_format: str | None = None  # None: console on a terminal, json otherwise
    not_used: tuple[str, ...] = ()  # set variables agentbot does not use (NOT_USED_PREFIX)
    # Days kept of workflow_events and delivered outbox rows; of the interaction history
    # (None: kept for ever).
    retention_days: int = 30
    history_days: int | None = None
    # WEBHOOK_ALLOWED_NETWORKS: internal networks and hosts flow webhooks may call (by default
    # loopback, private, link-local and metadata addresses are refused).
    webhook_allowed: Allowed = NOTHING_ALLOWED

    @property
    def chatwoot_configured(self) -> bool:
        return self.chatwoot_url is not None and self.chatwoot_api_token is not None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], env_file_text: str | None = None) -> Settings:
        values = parse_env_file(env_file_text or "")
        values.update({k: v for k, v in environ.items()})
        get = _Getter(values)

        chatwoot_url = get.url("CHATWOOT_URL")
        api_token = get.secret("CHATWOOT_API_TOKEN")
        if api_token is not None and chatwoot_url is None:
            raise ConfigError(
                "CHATWOOT_URL",
                "is missing: set it next to CHATWOOT_API_TOKEN, e.g. http://rails:3000",
            )
        return cls(
            chatwoot_url=chatwoot_url,
            chatwoot_api_token=api_token,
            chatwoot_user_token=get.secret("CHATWOOT_USER_TOKEN"),
            chatwoot_webhook_secret=get.secret("CHATWOOT_WEBHOOK_SECRET"),
            webhook_token=get.secret("WEBHOOK_TOKEN"),
            database_url=database_url(get),
            host=get.text("WORKFLOWS_HOST") or "0.0.0.0",
            port=get.port("WORKFLOWS_PORT", 3001),
            api_token=get.secret("WORKFLOWS_API_TOKEN"),
            metrics_token=get.secret("METRICS_TOKEN"),
            flows_dir=Path(get.text("FLOWS_DIR") or "flows"),
            log_level=get.choice("LOG_LEVEL", LOG_LEVELS) or "info",
            log_format=get.choice("LOG_FORMAT", LOG_FORMATS),
            not_used=tuple(
                sorted(k for k in values if k.startswith(NOT_USED_PREFIX) and get.text(k))
            ),
            retention_days=get.days("RETENTION_DAYS") or 30,
            history_days=get.days("HISTORY_RETENTION_DAYS"),
            webhook_allowed=get.allowed("WEBHOOK_ALLOWED_NETWORKS"),
        )

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
        """Read the real environment and the env file (the shell's entry point)."""
        env = os.environ if environ is None else environ
        path = Path(env.get("WORKFLOWS_ENV_FILE") or DEFAULT_ENV_FILE)
        if not path.is_absolute():
            path = (cwd or Path.cwd()) / path
        text = None
        if path.is_file():
            text = path.read_text(encoding="utf-8")
        elif env.get("WORKFLOWS_ENV_FILE"):
            raise ConfigError(
                "WORKFLOWS_ENV_FILE",
                f"names '{path}', which does not exist: fix the path or unset it",
            )
        return cls.from_environ(env, text)

    def want_json_logs(self) -> bool:
        if self.log_format is None:
            return not sys.stderr.isatty()
        return self.log_format == "json"


def parse_env_file(text: str) -> dict[str, str]:
    """`KEY=value` lines; `#` comments, blank lines, `export ` and matching quotes allowed."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def database_url(get: _Getter) -> str | None:
    url = get.text("DATABASE_URL")
    if url is not None:
        fix = "use postgresql://user:pass@host/db or 'host=... dbname=...'"
        if "://" in url and urlsplit(url).scheme not in ("postgres", "postgresql"):
            raise ConfigError("DATABASE_URL", f"'{url}' is not a PostgreSQL URL: {fix}")
        try:
            conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ConfigError("DATABASE_URL", f"cannot be parsed ({exc}): {fix}") from None
        return url
    host = get.text("POSTGRES_HOST")
    names = ("POSTGRES_PORT", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD")
    if host is None:
        given = [n for n in names if get.text(n) is not None]
        if given:
            raise ConfigError(
                "POSTGRES_HOST", f"is missing while {given[0]} is set: set POSTGRES_HOST too"
            )
        return None
    port = get.port("POSTGRES_PORT", 5432)
    db = get.text("POSTGRES_DB") or DEFAULT_DB_NAME
    user = get.text("POSTGRES_USER") or "postgres"
    password = get.text("POSTGRES_PASSWORD")
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    return f"postgresql://{auth}@{host}:{port}/{quote(db, safe='')}"


class _Getter:
    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def text(self, name: str) -> str | None:
        value = self._values.get(name, "").strip()
        return value or None

    def secret(self, name: str) -> Secret | None:
        value = self.text(name)
        return None if value is None else Secret(value)

    def url(self, name: str) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(name, f"'{value}' is not an http(s) URL: use e.g. http://rails:3000")
        return value.rstrip("/")

    def port(self, name: str, default: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise ConfigError(name, f"'{value}' is not a port number: use 1-65535")
        return int(value)

    def days(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(name, f"'{value}' is not a number of days: use 1 or more")
        return int(value)

    def allowed(self, name: str) -> Allowed:
        try:
            return Allowed.parse(self.text(name) or "")
        except ValueError as exc:
            raise ConfigError(name, f"has {exc}: use e.g. 10.0.0.0/8,crm.internal") from None

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        if value.lower() not in choices:
            raise ConfigError(name, f"'{value}' is not one of {', '.join(choices)}")
        return value.lower()
