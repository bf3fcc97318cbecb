"""Settings.from_environ(): the contract's variables, and one clear line for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentbot.config import Secret, Settings, parse_env_file
from agentbot.errors import ConfigError


def test_defaults() -> None:
    """Nothing set: embedded database, no Chatwoot, port 3001."""
    s = Settings.from_environ({})
    assert s.database_url is None
    assert not s.chatwoot_configured
    assert (s.host, s.port, s.flows_dir) == ("0.0.0.0", 3001, Path("flows"))


def test_env_file_and_environment() -> None:
    """The env file is read; the real environment wins; an empty value counts as unset."""
    text = (
        "# comment\nexport CHATWOOT_URL=http://rails:3000/\nCHATWOOT_API_TOKEN='abc'\n"
        "WORKFLOWS_PORT=4000\nFLOWS_DIR=\nPOSTGRES_HOST=db\nPOSTGRES_PASSWORD=p@ss word\n"
    )
    s = Settings.from_environ({"WORKFLOWS_PORT": "5000", "POSTGRES_DB": ""}, text)
    assert s.chatwoot_url == "http://rails:3000"
    assert s.chatwoot_api_token == Secret("abc")
    assert s.port == 5000
    assert s.flows_dir == Path("flows")
    assert s.database_url == "postgresql://postgres:p%40ss%20word@db:5432/chatwoot_workflows"


def test_secrets_do_not_print() -> None:
    """Tokens never show in a repr."""
    s = Settings.from_environ({"CHATWOOT_URL": "http://x", "CHATWOOT_API_TOKEN": "tok-123"})
    assert "tok-123" not in repr(s)
    assert s.chatwoot_api_token is not None
    assert s.chatwoot_api_token.reveal() == "tok-123"


BAD = [
    ("bad url", {"CHATWOOT_URL": "rails:3000"}, "CHATWOOT_URL 'rails:3000' is not an http(s) URL"),
    ("token without url", {"CHATWOOT_API_TOKEN": "t"}, "CHATWOOT_URL is missing"),
    ("port", {"WORKFLOWS_PORT": "eighty"}, "WORKFLOWS_PORT 'eighty' is not a port number"),
    ("port range", {"WORKFLOWS_PORT": "70000"}, "WORKFLOWS_PORT '70000' is not a port number"),
    ("pg port", {"POSTGRES_HOST": "db", "POSTGRES_PORT": "x"}, "POSTGRES_PORT 'x' is not a port"),
    ("pg without host", {"POSTGRES_DB": "x"}, "POSTGRES_HOST is missing while POSTGRES_DB is set"),
    (
        "database url",
        {"DATABASE_URL": "mysql://x"},
        "DATABASE_URL 'mysql://x' is not a PostgreSQL URL",
    ),
    ("database dsn", {"DATABASE_URL": "host=db port"}, "DATABASE_URL cannot be parsed"),
    ("log level", {"LOG_LEVEL": "loud"}, "LOG_LEVEL 'loud' is not one of"),
    ("log format", {"LOG_FORMAT": "xml"}, "LOG_FORMAT 'xml' is not one of json, console"),
    (
        "allowed networks",
        {"WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8, crm internal"},
        "WEBHOOK_ALLOWED_NETWORKS has 'crm internal' is neither a network",
    ),
]


def test_allowed_networks() -> None:
    """WEBHOOK_ALLOWED_NETWORKS lists the internal networks and hosts flow webhooks may call."""
    from ipaddress import ip_network

    s = Settings.from_environ({"WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8,127.0.0.1, CRM.internal"})
    assert s.webhook_allowed.networks == (ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"))
    assert s.webhook_allowed.hosts == frozenset({"crm.internal"})
    assert Settings.from_environ({}).webhook_allowed.networks == ()


@pytest.mark.parametrize(("environ", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_values(environ: dict[str, str], message: str) -> None:
    """A malformed value names the variable and the fix."""
    with pytest.raises(ConfigError) as info:
        Settings.from_environ(environ)
    assert str(info.value).startswith(message)


def test_load_reads_the_file(tmp_path: Path) -> None:
    """load() reads env-workflows from the working directory, or WORKFLOWS_ENV_FILE."""
    (tmp_path / "env-workflows").write_text("WORKFLOWS_PORT=4100\n")
    assert Settings.load({}, cwd=tmp_path).port == 4100
    (tmp_path / "other").write_text("WORKFLOWS_PORT=4200\n")
    assert Settings.load({"WORKFLOWS_ENV_FILE": "other"}, cwd=tmp_path).port == 4200
    with pytest.raises(ConfigError, match="WORKFLOWS_ENV_FILE names"):
        Settings.load({"WORKFLOWS_ENV_FILE": "missing"}, cwd=tmp_path)


def test_parse_env_file() -> None:
    """Lines without '=' are skipped; quotes are stripped only when they match."""
    assert parse_env_file('A=1\nnonsense\nB="2"\nC=\'3"\n') == {"A": "1", "B": "2", "C": "'3\""}


def test_old_system_variables_are_listed_as_not_used() -> None:
    """Set WHATSAPP_* variables are listed as not used; empty ones and other names are not."""
    text = "WHATSAPP_API_TOKEN=x\nWHATSAPP_VERIFY_TOKEN=\nWORKFLOWS_PORT=3001\n"
    settings = Settings.from_environ({"WHATSAPP_PHONE_ID": "1"}, text)
    assert settings.not_used == ("WHATSAPP_API_TOKEN", "WHATSAPP_PHONE_ID")
    assert Settings.from_environ({}, "").not_used == ()


def test_metrics_token() -> None:
    """METRICS_TOKEN is read as a secret of its own; unset, /metrics stays off."""
    assert Settings.from_environ({}).metrics_token is None
    s = Settings.from_environ({"METRICS_TOKEN": "m-1", "WORKFLOWS_API_TOKEN": "a-1"})
    assert s.metrics_token == Secret("m-1")
    assert s.api_token == Secret("a-1")
