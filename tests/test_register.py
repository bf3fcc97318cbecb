"""`agentbot register` against the fake Chatwoot over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from agentbot.chatwoot import ChatwootClient
from agentbot.config import Secret, Settings
from agentbot.register import (
    RegisterOptions,
    Registration,
    host_is_private,
    register,
    register_command,
    report,
    safe_fetch_advice,
    url_notes,
)
from tests.fakes import FakeChatwoot, FakeChatwootServer
from tests.test_cli import agentbot, environment

PUBLIC_URL = "https://bot.example.com/webhooks/chatwoot"
WRITES = ("POST", "PATCH", "PUT", "DELETE")


@pytest.fixture
def fake() -> FakeChatwoot:
    fake = FakeChatwoot(autocreate=False)
    fake.add_inbox(1, 2, name="Site", channel_type="Channel::WebWidget")
    return fake


@pytest.fixture
def server(fake: FakeChatwoot) -> Iterator[FakeChatwootServer]:
    with FakeChatwootServer(fake) as server:
        yield server


async def public(host: str) -> Sequence[str]:
    """A resolver that finds every name on the public internet."""
    return ["93.184.215.14"]


async def run_register(
    server: FakeChatwootServer,
    token: str,
    *,
    url: str = PUBLIC_URL,
    inboxes: tuple[int, ...] = (1,),
    account_id: int | None = None,
) -> Registration:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        client = ChatwootClient(http, Secret(token))
        options = RegisterOptions(webhook_url=url, inboxes=inboxes, account_id=account_id)
        return await register(client, options)


def settings_for(server: FakeChatwootServer, token: str | None) -> Settings:
    return Settings(
        chatwoot_url=server.url,
        chatwoot_user_token=Secret(token) if token is not None else None,
    )


def test_register_twice_creates_one_bot_and_changes_nothing_the_second_time(
    fake: FakeChatwoot, server: FakeChatwootServer, tmp_path: Path
) -> None:
    """Run twice as a user runs it: one bot, inboxes connected once, no write the second time."""
    env = environment(tmp_path, CHATWOOT_URL=server.url, CHATWOOT_USER_TOKEN=fake.user_token)
    args = ("register", "--url", PUBLIC_URL, "--inbox", "1", "--inbox", "2")

    first = agentbot(*args, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    bots = [b for b in fake.agent_bots() if b["name"] == "agentbot"]
    assert len(bots) == 1
    bot = bots[0]
    assert (bot["outgoing_url"], bot["bot_type"], bot["account_id"]) == (PUBLIC_URL, "webhook", 1)
    assert fake.inbox_agent_bot(1) == fake.inbox_agent_bot(2) == bot["id"]
    assert first.stdout.splitlines() == [
        f"# created agent bot 'agentbot' (id {bot['id']}) calling {PUBLIC_URL}",
        f"# connected inbox 1 to agent bot 'agentbot' (id {bot['id']}), "
        "replacing agent bot 'Bot' (id 1)",
        f"# connected inbox 2 to agent bot 'agentbot' (id {bot['id']})",
        "# paste these lines into env-workflows:",
        f"CHATWOOT_URL={server.url}",
        f"CHATWOOT_API_TOKEN={bot['access_token']}",
        f"CHATWOOT_WEBHOOK_SECRET={bot['secret']}",
    ]
    written = [(r.method, r.path) for r in fake.requests if r.method in WRITES]
    assert written == [
        ("POST", "/api/v1/accounts/1/agent_bots"),
        ("POST", "/api/v1/accounts/1/inboxes/1/set_agent_bot"),
        ("POST", "/api/v1/accounts/1/inboxes/2/set_agent_bot"),
    ]

    before = len(fake.requests)
    second = agentbot(*args, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    again = fake.requests[before:]
    assert again, "the second run reads Chatwoot"
    assert [r for r in again if r.method in WRITES] == []
    assert second.stdout.splitlines() == [
        f"# nothing changed: agent bot 'agentbot' (id {bot['id']}) in account 1 already calls "
        "the URL and is connected to inbox 1, 2",
        *first.stdout.splitlines()[3:],
    ]
    assert len([b for b in fake.agent_bots() if b["name"] == "agentbot"]) == 1
    assert fake.violations == []


@pytest.mark.anyio
async def test_existing_bot_gets_only_its_url_changed(
    fake: FakeChatwoot, server: FakeChatwootServer
) -> None:
    """A bot of that name with another URL is updated (PATCH outgoing_url only), not duplicated;
    an inbox already connected to it is left alone."""
    bot_id = fake.add_agent_bot(
        name="agentbot", outgoing_url="http://old.example/webhooks/chatwoot"
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        admin = ChatwootClient(http, Secret(fake.user_token))
        await admin.set_inbox_agent_bot(1, 2, bot_id)
    before = len(fake.requests)

    done = await run_register(server, fake.user_token, inboxes=(2, 1, 2))

    assert done.bot_id == bot_id
    assert done.changes == (
        f"changed the URL of agent bot 'agentbot' (id {bot_id}) from "
        f"http://old.example/webhooks/chatwoot to {PUBLIC_URL}",
        f"connected inbox 1 to agent bot 'agentbot' (id {bot_id}), replacing agent bot 'Bot' "
        "(id 1)",
    )
    writes = [(r.method, r.path, r.json) for r in fake.requests[before:] if r.method in WRITES]
    assert writes == [
        ("PATCH", f"/api/v1/accounts/1/agent_bots/{bot_id}", {"outgoing_url": PUBLIC_URL}),
        ("POST", "/api/v1/accounts/1/inboxes/1/set_agent_bot", {"agent_bot": bot_id}),
    ]
    assert [b["name"] for b in fake.agent_bots()].count("agentbot") == 1
    assert fake.violations == []


@pytest.mark.anyio
async def test_the_account_comes_from_the_profile_or_must_be_given(
    fake: FakeChatwoot, server: FakeChatwootServer
) -> None:
    """With one account the profile names it; with two, --account is asked for, naming both."""
    assert (await run_register(server, fake.user_token)).account_id == 1
    fake.add_account(5, name="Other")
    fake.add_inbox(5, 50)
    with pytest.raises(Exception, match=r"accounts 1 \(Acme Support, administrator\), 5 "):
        await run_register(server, fake.user_token)
    done = await run_register(server, fake.user_token, account_id=5, inboxes=(50,))
    assert (done.account_id, fake.inbox_agent_bot(50, account_id=5)) == (5, done.bot_id)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("nope", "CHATWOOT_USER_TOKEN is not valid: set it to an administrator's access token"),
        ("bot-token", "CHATWOOT_USER_TOKEN is an Agent Bot's token"),
        ("agent-token", "CHATWOOT_USER_TOKEN is an agent's, not an administrator's, in account 1"),
    ],
    ids=["invalid", "bot", "agent"],
)
async def test_a_token_that_cannot_register_is_named_with_the_fix(
    fake: FakeChatwoot,
    server: FakeChatwootServer,
    capsys: pytest.CaptureFixture[str],
    token: str,
    expected: str,
) -> None:
    """An invalid, a bot's or an agent's token fails in one line saying which token to use."""
    fake.add_agent(7, access_token="agent-token")
    options = RegisterOptions(webhook_url=PUBLIC_URL, inboxes=(1,))
    assert await register_command(settings_for(server, token), options) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"agentbot: register: {expected}")
    assert len(err.splitlines()) == 1
    assert "agentbot" not in [b["name"] for b in fake.agent_bots()]


@pytest.mark.anyio
async def test_of_several_bots_with_the_name_the_first_is_used(
    fake: FakeChatwoot, server: FakeChatwootServer
) -> None:
    """Two bots named 'agentbot': the older is used and a note says to delete the other."""
    first = fake.add_agent_bot(name="agentbot", outgoing_url=PUBLIC_URL)
    second = fake.add_agent_bot(name="agentbot")
    done = await run_register(server, fake.user_token)
    assert done.bot_id == first
    assert done.notes == (
        f"2 agent bots are named 'agentbot' (ids {first}, {second}): using id {first}; "
        "delete the others in Chatwoot",
    )


@pytest.mark.anyio
async def test_an_unknown_inbox_is_named(fake: FakeChatwoot, server: FakeChatwootServer) -> None:
    """An inbox that does not exist stops register with its id and where to find the ids."""
    with pytest.raises(Exception, match="inbox 9 does not exist in account 1: check --inbox"):
        await run_register(server, fake.user_token, inboxes=(1, 9))


@pytest.mark.anyio
async def test_missing_settings_and_bad_url_are_one_line(
    fake: FakeChatwoot, server: FakeChatwootServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """No CHATWOOT_USER_TOKEN, no CHATWOOT_URL or a bad --url: exit 2, one line naming it."""
    options = RegisterOptions(webhook_url=PUBLIC_URL, inboxes=(1,))
    assert await register_command(settings_for(server, None), options) == 2
    assert capsys.readouterr().err.startswith(
        "agentbot: register: CHATWOOT_USER_TOKEN is missing: register needs an administrator's"
    )
    assert await register_command(Settings(chatwoot_user_token=Secret("x")), options) == 2
    assert capsys.readouterr().err.startswith("agentbot: register: CHATWOOT_URL is missing")
    bad = RegisterOptions(webhook_url="bot.example.com", inboxes=(1,))
    assert await register_command(settings_for(server, fake.user_token), bad) == 2
    assert "--url 'bot.example.com' is not an http(s) URL" in capsys.readouterr().err
    assert fake.requests == []


@pytest.mark.anyio
async def test_unreachable_chatwoot_is_named_with_the_fix(
    fake: FakeChatwoot, server: FakeChatwootServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Chatwoot down: exit 1, one line naming the URL and CHATWOOT_URL."""
    server.stop()
    options = RegisterOptions(webhook_url=PUBLIC_URL, inboxes=(1,))
    assert await register_command(settings_for(server, fake.user_token), options) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"agentbot: register: Chatwoot at {server.url} is unreachable: ")
    assert err.rstrip().endswith("; check CHATWOOT_URL")


@pytest.mark.anyio
async def test_private_url_prints_the_safe_fetch_hint(
    fake: FakeChatwoot, server: FakeChatwootServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A container name as host: the output tells Chatwoot >= 4.14.1 needs
    SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true."""
    url = "http://agentbot:3001/webhooks/chatwoot"
    options = RegisterOptions(webhook_url=url, inboxes=(1,))
    assert await register_command(settings_for(server, fake.user_token), options) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("# note")]
    assert notes == [
        "# note: the host 'agentbot' is private: Chatwoot 4.15.1 refuses to call it unless "
        "Chatwoot (rails and sidekiq) runs with SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true"
    ]


@pytest.mark.anyio
async def test_chatwoot_before_4_13_has_no_secret(
    server: FakeChatwootServer, fake: FakeChatwoot
) -> None:
    """Chatwoot 4.12 has no bot secrets: no CHATWOOT_WEBHOOK_SECRET line, a WEBHOOK_TOKEN note."""
    fake.version = "4.12.0"
    done = await run_register(server, fake.user_token)
    assert done.secret is None
    lines = report(done, chatwoot_url=server.url, inboxes=(1,))
    assert not any(line.startswith("CHATWOOT_WEBHOOK_SECRET=") for line in lines)
    assert any(line.startswith("CHATWOOT_API_TOKEN=") for line in lines)
    assert (
        "# note: Chatwoot 4.12.0 does not sign webhooks (4.13 and later do): set WEBHOOK_TOKEN "
        f"in env-workflows and register again with --url '{PUBLIC_URL}?token=<WEBHOOK_TOKEN>'"
    ) in lines


@pytest.mark.anyio
async def test_url_notes_catch_a_wrong_path_and_a_missing_token() -> None:
    """--url without /webhooks/chatwoot, or without the ?token= agentbot expects, gets a note."""
    settings = Settings(webhook_token=Secret("t0k"))
    notes = await url_notes("https://bot.example.com/", settings, (4, 15, 1), public)
    assert notes == [
        "the URL's path is '/', but agentbot receives webhooks at /webhooks/chatwoot: unless a "
        "proxy rewrites it, use https://bot.example.com/webhooks/chatwoot",
        "WEBHOOK_TOKEN is set and CHATWOOT_WEBHOOK_SECRET is not, so agentbot wants "
        "?token=<WEBHOOK_TOKEN> on the URL; paste CHATWOOT_WEBHOOK_SECRET below instead",
    ]
    assert await url_notes(f"{PUBLIC_URL}?token=t0k", settings, (4, 15, 1), public) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("host", "resolved", "private"),
    [
        ("127.0.0.1", [], True),
        ("10.1.2.3", [], True),
        ("[::1]", [], True),
        ("169.254.169.254", [], True),
        ("93.184.215.14", [], False),
        ("agentbot", [], True),
        ("bot.internal", [], True),
        ("bot.example.com", ["93.184.215.14"], False),
        ("bot.example.com", ["172.18.0.5"], True),
        ("bot.example.com", ["172.18.0.5", "93.184.215.14"], False),
        ("bot.example.com", OSError("no such name"), False),
    ],
    ids=[
        "loopback",
        "rfc1918",
        "ipv6-loopback",
        "link-local",
        "public-ip",
        "container-name",
        "internal-suffix",
        "public-name",
        "name-to-private",
        "name-to-mixed",
        "unresolvable",
    ],
)
async def test_private_hosts(host: str, resolved: list[str] | OSError, private: bool) -> None:
    """What Chatwoot's SSRF filter would refuse: non-public addresses, and names that only
    resolve to them; a name that does not resolve here is given the benefit of the doubt."""

    async def resolve(name: str) -> Sequence[str]:
        if isinstance(resolved, OSError):
            raise resolved
        return resolved

    assert await host_is_private(host, resolve) is private


@pytest.mark.parametrize(
    ("version", "blocked", "words"),
    [
        (None, True, "Chatwoot 4.14 and later refuse to call it unless"),
        ((4, 13, 2), False, "Chatwoot 4.13.2 calls it, but from 4.14"),
        ((4, 14, 0), True, "upgrade Chatwoot to 4.14.1 or later"),
        ((4, 14, 1), True, "Chatwoot 4.14.1 refuses to call it unless"),
    ],
    ids=["unknown", "4.13", "4.14.0", "4.14.1"],
)
def test_safe_fetch_advice_follows_the_version(
    version: tuple[int, int, int] | None, blocked: bool, words: str
) -> None:
    """The private-address advice fits Chatwoot's version (docs/chatwoot.md §2)."""
    refused, advice = safe_fetch_advice("bot", version)
    assert refused is blocked
    assert words in advice
    assert "SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true" in advice
