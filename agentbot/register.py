"""`agentbot register`: create or update the Agent Bot in Chatwoot and connect it to inboxes.

It runs with an administrator's token (CHATWOOT_USER_TOKEN), reads before it writes and changes
only what differs, so a second run sends no POST or PATCH. It prints the `env-workflows` lines to
paste: the bot's access token and secret, with a comment line per change. It must not touch the
database or the flows.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx

from agentbot.chatwoot import ChatwootClient, parse_version
from agentbot.config import Secret, Settings
from agentbot.errors import AgentbotError, ChatwootRejected, ChatwootUnavailable

DEFAULT_NAME = "agentbot"
WEBHOOK_PATH = "/webhooks/chatwoot"
DESCRIPTION = "agentbot: conversation flows"
TIMEOUT = 15.0

Version = tuple[int, int, int]
Resolver = Callable[[str], Awaitable[Sequence[str]]]

# Chatwoot's 401 bodies (docs/chatwoot.md §3, RequestExceptionHandler), and what to do about each.
INVALID_TOKEN = "Invalid Access Token"
NOT_FOR_BOTS = "not authorized for bots"
NOT_ALLOWED = "not authorized to do this action"
NOT_YOUR_ACCOUNT = "not authorized to access this account"


@dataclass(frozen=True, slots=True)
class RegisterOptions:
    webhook_url: str
    inboxes: tuple[int, ...]
    account_id: int | None = None  # None: the only account of the token's user
    name: str = DEFAULT_NAME


@dataclass(frozen=True, slots=True)
class Registration:
    """What `register` found and did: the bot, its credentials, and a line per change."""

    account_id: int
    bot_id: int
    bot_name: str
    access_token: Secret
    secret: Secret | None  # None on Chatwoot < 4.13, which has no bot secrets
    changes: tuple[str, ...]
    notes: tuple[str, ...]
    version: Version | None


def check_webhook_url(url: str) -> str | None:
    """The problem with `--url`, or None when it is usable."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            f"--url '{url}' is not an http(s) URL: give the public URL of {WEBHOOK_PATH}, "
            f"e.g. https://bot.example.com{WEBHOOK_PATH}"
        )
    return None


async def register(client: ChatwootClient, options: RegisterOptions) -> Registration:
    """Create or update the bot named `options.name`, connect it to the inboxes, read its
    credentials. Raises AgentbotError with a message that says what to do."""
    version = await _version(client)
    account_id = options.account_id
    if account_id is None:
        account_id = await _only_account(client)
    changes: list[str] = []
    notes: list[str] = []
    url = options.webhook_url

    try:
        bots = await client.agent_bots(account_id)
    except ChatwootRejected as exc:
        raise AgentbotError(_explain(exc, account_id)) from exc
    named = sorted(
        (b for b in bots if b.get("name") == options.name and b.get("account_id") == account_id),
        key=lambda b: int(b.get("id") or 0),
    )
    label = f"agent bot '{options.name}'"
    try:
        if not named:
            body = {
                "name": options.name,
                "description": DESCRIPTION,
                "outgoing_url": url,
                "bot_type": "webhook",
            }
            bot = await client.create_agent_bot(account_id, body)
            changes.append(f"created {label} (id {bot.get('id')}) calling {url}")
        else:
            bot = named[0]
            if len(named) > 1:
                ids = ", ".join(str(b.get("id")) for b in named)
                notes.append(
                    f"{len(named)} agent bots are named '{options.name}' (ids {ids}): "
                    f"using id {bot.get('id')}; delete the others in Chatwoot"
                )
            if bot.get("outgoing_url") != url:
                old = bot.get("outgoing_url") or "(none)"
                bot = await client.update_agent_bot(
                    account_id, int(bot["id"]), {"outgoing_url": url}
                )
                changes.append(
                    f"changed the URL of {label} (id {bot.get('id')}) from {old} to {url}"
                )
    except ChatwootRejected as exc:
        raise AgentbotError(_explain(exc, account_id)) from exc
    bot_id = int(bot["id"])

    for inbox_id in dict.fromkeys(options.inboxes):
        try:
            current = await client.inbox_agent_bot(account_id, inbox_id)
            if current is not None and current.get("id") == bot_id:
                continue
            await client.set_inbox_agent_bot(account_id, inbox_id, bot_id)
        except ChatwootRejected as exc:
            raise AgentbotError(_explain(exc, account_id, inbox_id=inbox_id)) from exc
        replaced = (
            f", replacing agent bot '{current.get('name')}' (id {current.get('id')})"
            if current is not None
            else ""
        )
        changes.append(f"connected inbox {inbox_id} to {label} (id {bot_id}){replaced}")

    access_token = bot.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise AgentbotError(
            f"Chatwoot did not show the access token of {label} (id {bot_id}) in account "
            f"{account_id}: it shows it only for bots of that account; check --account"
        )
    secret = bot.get("secret")
    if not isinstance(secret, str) or not secret:
        if version is None or version >= (4, 13, 0):
            raise AgentbotError(
                f"Chatwoot did not show the secret of {label} (id {bot_id}): it shows it to "
                "administrators only; set CHATWOOT_USER_TOKEN to an administrator's access token"
            )
        secret = None
        if "token" not in parse_qs(urlsplit(url).query):
            notes.append(
                f"Chatwoot {_dotted(version)} does not sign webhooks (4.13 and later do): set "
                "WEBHOOK_TOKEN in env-workflows and register again with "
                f"--url '{_without_query(url)}?token=<WEBHOOK_TOKEN>'"
            )
    return Registration(
        account_id=account_id,
        bot_id=bot_id,
        bot_name=options.name,
        access_token=Secret(access_token),
        secret=Secret(secret) if secret is not None else None,
        changes=tuple(changes),
        notes=tuple(notes),
        version=version,
    )


def report(
    registration: Registration,
    *,
    chatwoot_url: str,
    inboxes: Sequence[int],
    url_notes: Sequence[str] = (),
) -> list[str]:
    """The lines `register` prints: comments (`#`), then the `env-workflows` lines to paste."""
    r = registration
    lines = [f"# {change}" for change in r.changes]
    if not r.changes:
        connected = ", ".join(str(i) for i in dict.fromkeys(inboxes))
        lines.append(
            f"# nothing changed: agent bot '{r.bot_name}' (id {r.bot_id}) in account "
            f"{r.account_id} already calls the URL and is connected to inbox {connected}"
        )
    lines.extend(f"# note: {note}" for note in (*r.notes, *url_notes))
    lines.append("# paste these lines into env-workflows:")
    lines.append(f"CHATWOOT_URL={chatwoot_url}")
    lines.append(f"CHATWOOT_API_TOKEN={r.access_token.reveal()}")
    if r.secret is not None:
        lines.append(f"CHATWOOT_WEBHOOK_SECRET={r.secret.reveal()}")
    return lines


async def url_notes(
    url: str, settings: Settings, version: Version | None, resolve: Resolver | None = None
) -> list[str]:
    """Warnings about the webhook URL: its path, its ?token=, and a private address."""
    parts = urlsplit(url)
    notes = []
    if not parts.path.rstrip("/").endswith(WEBHOOK_PATH):
        notes.append(
            f"the URL's path is '{parts.path or '/'}', but agentbot receives webhooks at "
            f"{WEBHOOK_PATH}: unless a proxy rewrites it, use "
            f"{parts.scheme}://{parts.netloc}{WEBHOOK_PATH}"
        )
    if settings.chatwoot_webhook_secret is None and settings.webhook_token is not None:
        given = parse_qs(parts.query).get("token", [""])[0]
        if given != settings.webhook_token.reveal():
            notes.append(
                "WEBHOOK_TOKEN is set and CHATWOOT_WEBHOOK_SECRET is not, so agentbot wants "
                "?token=<WEBHOOK_TOKEN> on the URL; paste CHATWOOT_WEBHOOK_SECRET below instead"
            )
    host = parts.hostname or ""
    if await host_is_private(host, resolve):
        notes.append(safe_fetch_advice(host, version)[1])
    return notes


def is_private_address(address: str) -> bool:
    """Private, loopback, link-local or otherwise not public: what Chatwoot 4.14+ refuses."""
    ip = ipaddress.ip_address(address.split("%")[0])
    return not ip.is_global


async def host_is_private(host: str, resolve: Resolver | None = None) -> bool:
    """True when `host` is or resolves (from here) only to non-public addresses. A name with no
    dot (a container's name) counts as private; a name that does not resolve here, as public."""
    host = host.strip("[]").lower()
    try:
        return is_private_address(host)
    except ValueError:
        pass
    if "." not in host or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return True
    try:
        addresses = await (resolve or _resolve)(host)
    except OSError:
        return False
    return bool(addresses) and all(is_private_address(a) for a in addresses)


def safe_fetch_advice(host: str, version: Version | None) -> tuple[bool, str]:
    """(whether Chatwoot will refuse to call `host`, what to do): docs/chatwoot.md §2, the
    SSRF block."""
    setting = "SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true"
    if version is None:
        return True, (
            f"the host '{host}' is private: Chatwoot 4.14 and later refuse to call it unless "
            f"Chatwoot (rails and sidekiq) runs with {setting} (4.14.1 and later)"
        )
    if version < (4, 14, 0):
        return False, (
            f"the host '{host}' is private: Chatwoot {_dotted(version)} calls it, but from 4.14 "
            f"on Chatwoot needs {setting} (4.14.1 and later) to do so"
        )
    if version < (4, 14, 1):
        return True, (
            f"the host '{host}' is private, and Chatwoot 4.14.0 refuses to call it, with no way to "
            f"allow it: upgrade Chatwoot to 4.14.1 or later and set {setting}, or use a public URL"
        )
    return True, (
        f"the host '{host}' is private: Chatwoot {_dotted(version)} refuses to call it unless "
        f"Chatwoot (rails and sidekiq) runs with {setting}"
    )


async def register_command(
    settings: Settings,
    options: RegisterOptions,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    resolve: Resolver | None = None,
) -> int:
    """The shell of `agentbot register`: check the settings, call Chatwoot, print."""
    chatwoot_url, user_token = settings.chatwoot_url, settings.chatwoot_user_token
    if chatwoot_url is None or user_token is None:
        missing = (
            "CHATWOOT_URL is missing: set it in env-workflows or the environment, "
            "e.g. CHATWOOT_URL=http://rails:3000"
            if chatwoot_url is None
            else "CHATWOOT_USER_TOKEN is missing: register needs an administrator's access token "
            "(Chatwoot: Profile settings, Access Token); set it in env-workflows or the environment"
        )
        print(f"agentbot: register: {missing}", file=sys.stderr)
        return 2
    problem = check_webhook_url(options.webhook_url)
    if problem is not None:
        print(f"agentbot: register: {problem}", file=sys.stderr)
        return 2
    async with httpx.AsyncClient(
        base_url=chatwoot_url, transport=transport, timeout=TIMEOUT
    ) as http:
        client = ChatwootClient(http, user_token)
        try:
            registration = await register(client, options)
        except ChatwootUnavailable as exc:
            print(f"agentbot: register: {unreachable(chatwoot_url, exc)}", file=sys.stderr)
            return 1
        except AgentbotError as exc:
            print(f"agentbot: register: {exc}", file=sys.stderr)
            return 1
    notes = await url_notes(options.webhook_url, settings, registration.version, resolve)
    for line in report(
        registration,
        chatwoot_url=chatwoot_url,
        inboxes=options.inboxes,
        url_notes=notes,
    ):
        print(line)
    return 0


def unreachable(chatwoot_url: str, exc: ChatwootUnavailable) -> str:
    cause = exc.__cause__
    if isinstance(cause, httpx.TransportError):
        reason = str(cause) or type(cause).__name__
        return f"Chatwoot at {chatwoot_url} is unreachable: {reason}; check CHATWOOT_URL"
    return f"Chatwoot at {chatwoot_url} failed: {exc}; try again later"


async def _version(client: ChatwootClient) -> Version | None:
    """Chatwoot's version from `GET /api`, or None (an old or proxied Chatwoot may not say)."""
    try:
        info = await client.server_info()
    except ChatwootRejected:
        return None
    return parse_version(info.get("version"))


async def _only_account(client: ChatwootClient) -> int:
    try:
        profile = await client.profile()
    except ChatwootRejected as exc:
        raise AgentbotError(_explain(exc, None)) from exc
    accounts = [a for a in profile.get("accounts") or [] if isinstance(a, dict) and "id" in a]
    if len(accounts) == 1:
        return int(accounts[0]["id"])
    if not accounts:
        raise AgentbotError("CHATWOOT_USER_TOKEN's user belongs to no account: pass --account ID")
    listed = ", ".join(f"{a['id']} ({a.get('name')}, {a.get('role')})" for a in accounts)
    raise AgentbotError(
        f"CHATWOOT_USER_TOKEN's user belongs to accounts {listed}: pass --account ID"
    )


def _explain(exc: ChatwootRejected, account_id: int | None, *, inbox_id: int | None = None) -> str:
    """Chatwoot's refusal as a sentence that names the fix."""
    admin = "an administrator's access token (Chatwoot: Profile settings, Access Token)"
    body = exc.body
    if exc.status_code == 401:
        if INVALID_TOKEN in body:
            return f"CHATWOOT_USER_TOKEN is not valid: set it to {admin}"
        if NOT_FOR_BOTS in body:
            return f"CHATWOOT_USER_TOKEN is an Agent Bot's token: set it to {admin}"
        if NOT_ALLOWED in body:
            return (
                f"CHATWOOT_USER_TOKEN is an agent's, not an administrator's, in account "
                f"{account_id}: set it to {admin}"
            )
        if NOT_YOUR_ACCOUNT in body:
            return (
                f"CHATWOOT_USER_TOKEN's user is not a member of account {account_id}: "
                "check --account"
            )
    if exc.status_code == 404:
        if inbox_id is not None:
            return (
                f"inbox {inbox_id} does not exist in account {account_id}: check --inbox "
                "(Chatwoot: Settings, Inboxes shows each inbox's id in its URL)"
            )
        return f"account {account_id} does not exist in this Chatwoot: check --account"
    return str(exc)


def _dotted(version: Version | None) -> str:
    return ".".join(map(str, version)) if version is not None else "(unknown version)"


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]


async def _resolve(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    return [str(info[4][0]) for info in infos]
