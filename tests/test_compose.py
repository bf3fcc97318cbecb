"""Shipping beside Chatwoot: the compose override merged into Chatwoot's own compose file, the
settings the service gets from it, and the shipped env-workflows."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import (  # type: ignore[import-untyped, unused-ignore]
    Draft202012Validator,
    ValidationError,
)

from agentbot.config import Settings, parse_env_file

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = Path(__file__).resolve().parent / "compose"
SERVICE = "chatbot-workflows"
# Chatwoot's .env as its docker setup has it (the variables its compose file interpolates).
CHATWOOT_DOT_ENV = {"REDIS_PASSWORD": "redis-secret"}

_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `$VAR`, `${VAR}`, `${VAR:-default}` and `$$`, in every string of the file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("plain")
        found = env.get(name, "")
        default = match.group("default")
        return found if found or default is None else default

    return _VARIABLE.sub(one, value)


def _environment(value: Any) -> dict[str, str | None]:
    if isinstance(value, dict):
        return {str(k): None if v is None else str(v) for k, v in value.items()}
    pairs = (str(item).partition("=") for item in value or [])
    return {k: v if sep else None for k, sep, v in pairs}


def _depends_on(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {name: {"condition": "service_started"} for name in value or []}


def merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """The Compose Specification's merge of one service: mappings merge key by key, the
    environment and depends_on merge by name, ports and volumes add up, other values are
    replaced."""
    merged = dict(base)
    for key, value in override.items():
        if key not in merged:
            merged[key] = value
        elif key == "environment":
            merged[key] = {**_environment(merged[key]), **_environment(value)}
        elif key == "depends_on":
            merged[key] = {**_depends_on(merged[key]), **_depends_on(value)}
        elif key in ("ports", "volumes", "env_file", "networks") and isinstance(value, list):
            old = merged[key] if isinstance(merged[key], list) else [merged[key]]
            merged[key] = old + [v for v in value if v not in old]
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def merged_project() -> dict[str, Any]:
    """What `docker compose config` makes of Chatwoot's file with the override beside it."""
    base = yaml.safe_load((COMPOSE / "chatwoot-docker-compose.production.yaml").read_text())
    override = yaml.safe_load((ROOT / "docker-compose.override.yaml").read_text())
    base, override = interpolate(base, CHATWOOT_DOT_ENV), interpolate(override, CHATWOOT_DOT_ENV)
    project = dict(base)
    services = dict(base["services"])
    for name, service in override["services"].items():
        services[name] = merge_service(services.get(name, {}), service)
    project["services"] = services
    for key in ("volumes", "networks"):
        if key in override:
            project[key] = {**project.get(key, {}), **override[key]}
    return project


def validate(document: dict[str, Any]) -> None:
    schema = json.loads((COMPOSE / "compose-spec.json").read_text())
    Draft202012Validator(schema).validate(document)


def image_env() -> dict[str, str]:
    """The Dockerfile's ENV defaults (the lowest precedence in a container)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def container_settings(env_file_text: str) -> Settings:
    """The settings the service starts with: image ENV < env_file < `environment`."""
    service = merged_project()["services"][SERVICE]
    env = image_env()
    env.update(parse_env_file(env_file_text))
    env.update({k: v for k, v in _environment(service.get("environment")).items() if v is not None})
    return Settings.from_environ(env, None)


def test_override_merged_with_chatwoot_validates_against_the_compose_schema() -> None:
    """Chatwoot's compose file, the override alone, and both merged are valid Compose files."""
    validate(yaml.safe_load((COMPOSE / "chatwoot-docker-compose.production.yaml").read_text()))
    validate(yaml.safe_load((ROOT / "docker-compose.override.yaml").read_text()))
    validate(merged_project())
    with pytest.raises(ValidationError):  # the schema does catch a wrong file
        validate({"services": {SERVICE: {"restart": "unless-stopped", "ports": "3001"}}})


def test_the_bot_service_beside_chatwoot() -> None:
    """chatbot-workflows: env-workflows, port 3001, Chatwoot's network, waits for a healthy
    PostgreSQL, health-checked on /health, restarted unless stopped."""
    services = merged_project()["services"]
    bot = services[SERVICE]
    assert bot["env_file"] == "env-workflows"
    assert bot["ports"] == ["127.0.0.1:3001:3001"]
    assert bot["networks"] == ["default"]  # the network rails and postgres are on
    assert "networks" not in services["rails"]
    assert bot["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["postgres"]["healthcheck"]["test"] == [
        "CMD-SHELL",
        "pg_isready -U postgres -d chatwoot",
    ]
    assert services["postgres"]["image"] == "pgvector/pgvector:pg16"  # Chatwoot's, kept
    assert bot["restart"] == "unless-stopped"
    check = bot["healthcheck"]["test"]
    assert check[0] == "CMD"
    assert "/health" in check[-1]
    assert bot["image"] == "agentbot:latest"
    assert "environment" not in bot  # nothing that would win over env-workflows


def test_chatwoot_may_call_the_bot_on_the_private_network() -> None:
    """rails and sidekiq get SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true and keep their own lines."""
    services = merged_project()["services"]
    for name in ("rails", "sidekiq"):
        assert services[name]["environment"] == {
            "NODE_ENV": "production",
            "RAILS_ENV": "production",
            "INSTALLATION_ENV": "docker",
            "SAFE_FETCH_ALLOW_PRIVATE_NETWORK": "true",
        }
        assert services[name]["image"] == "chatwoot/chatwoot:latest"
    override = (ROOT / "docker-compose.override.yaml").read_text()
    assert "Chatwoot >= 4.14.0 refuses to send webhooks to private addresses" in override


def test_the_service_gets_chatwoot_and_its_own_database() -> None:
    """With the shipped env-workflows: Chatwoot at http://rails:3000, the database
    chatwoot_workflows on Chatwoot's postgres; a value in env-workflows wins."""
    shipped = container_settings((ROOT / "env-workflows").read_text())
    assert shipped.chatwoot_url == "http://rails:3000"
    assert shipped.database_url == "postgresql://postgres@postgres:5432/chatwoot_workflows"
    filled = container_settings(
        "CHATWOOT_URL=https://chat.example.com\nPOSTGRES_PASSWORD=pw\nCHATWOOT_API_TOKEN=t\n"
    )
    assert filled.chatwoot_url == "https://chat.example.com"
    assert filled.database_url == "postgresql://postgres:pw@postgres:5432/chatwoot_workflows"
    assert filled.chatwoot_configured


def test_the_old_systems_env_file_works_unchanged() -> None:
    """The old env-workflows (no CHATWOOT_URL, POSTGRES_DB=chatwoot, WHATSAPP_*) starts."""
    old = (Path(__file__).parent / "samples" / "env-workflows.old-system").read_text()
    settings = container_settings(old)
    assert settings.chatwoot_url == "http://rails:3000"
    assert settings.chatwoot_configured
    assert settings.database_url == "postgresql://postgres:old-password@postgres:5432/chatwoot"
    assert settings.not_used == ("WHATSAPP_API_TOKEN", "WHATSAPP_PHONE_ID")


def test_env_workflows_documents_every_variable_and_sets_none() -> None:
    """env-workflows: every line a comment, every variable agentbot reads shown commented out
    with a comment, so a fresh clone runs on its defaults."""
    text = (ROOT / "env-workflows").read_text()
    assert parse_env_file(text) == {}
    assert all(not line.strip() or line.startswith("#") for line in text.splitlines())
    source = (ROOT / "agentbot" / "config.py").read_text()
    read = set(re.findall(r'get\.\w+\("([A-Z_]+)"', source))
    assert {"CHATWOOT_URL", "DATABASE_URL", "POSTGRES_PASSWORD", "LOG_FORMAT"} <= read
    lines = text.splitlines()
    for name in sorted(read):
        (index,) = [i for i, line in enumerate(lines) if line.startswith(f"# {name}=")]
        assert lines[index - 1].startswith("# "), f"{name} has no comment above it"
    assert "WORKFLOWS_ENV_FILE" in text
    assert "env-workflows.local" in (ROOT / ".gitignore").read_text().splitlines()
