"""Tests of the fake Chatwoot: each rule it enforces, so the bot's tests can trust it."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.fakes import (
    NOT_FOR_BOTS,
    VENDORED_OPENAPI_PATH,
    FakeChatwoot,
    FakeChatwootServer,
    OpenApiNotFound,
    locate_openapi,
)

BASE = "http://chatwoot/api/v1/accounts/1"
ITEMS = [
    {"title": "Track my order", "value": "track_order"},
    {"title": "Returns", "value": "returns"},
]


def client(fake: FakeChatwoot, token: str | None, base: str = BASE) -> httpx.AsyncClient:
    """An in-process client of the fake's app (no port), sending `token` as api_access_token."""
    headers = {"api_access_token": token} if token is not None else {}
    return httpx.AsyncClient(transport=fake.transport(), base_url=base, headers=headers)


@pytest.fixture
def fake() -> FakeChatwoot:
    return FakeChatwoot()


@pytest.fixture
async def bot(fake: FakeChatwoot, anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client(fake, fake.bot_token) as c:
        yield c


@pytest.fixture
async def user(fake: FakeChatwoot, anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client(fake, fake.user_token) as c:
        yield c


@pytest.mark.anyio
async def test_bot_token_is_refused_outside_the_allow_list(fake, bot, user):
    """A bot token gets 401 on messages index and contacts; a user token gets through."""
    fake.add_conversation(1, 5)
    fake.add_contact(1, 9)
    for method, path, body in [
        ("GET", "/conversations/5/messages", None),
        ("GET", "/contacts/9", None),
        ("PUT", "/contacts/9", {"custom_attributes": {"plan": "pro"}}),
        ("GET", "/inboxes", None),
        ("GET", "/agent_bots", None),
    ]:
        refused = await bot.request(method, path.lstrip("/"), json=body)
        assert (refused.status_code, refused.json()) == (401, NOT_FOR_BOTS), path
        assert (await user.request(method, path.lstrip("/"), json=body)).status_code == 200, path
    assert fake.violations == []


@pytest.mark.anyio
async def test_missing_unknown_and_dash_cased_tokens(fake):
    """No token and an unknown token are 401; `Api-Access-Token` works like `api_access_token`."""
    async with client(fake, None) as anonymous, client(fake, "nope") as stranger:
        missing = await anonymous.post("conversations/5/toggle_status", json={"status": "open"})
        unknown = await stranger.post("conversations/5/toggle_status", json={"status": "open"})
    assert missing.status_code == unknown.status_code == 401
    assert unknown.json() == {"error": "Invalid Access Token"}
    async with httpx.AsyncClient(
        transport=fake.transport(), base_url=BASE, headers={"Api-Access-Token": "bot-token"}
    ) as dashed:
        assert (
            await dashed.post("conversations/5/labels", json={"labels": ["a"]})
        ).status_code == 200


@pytest.mark.anyio
async def test_account_mismatch_is_401_and_unknown_account_404(fake):
    """A token is refused on an account it does not belong to; a missing account is 404."""
    fake.add_account(2, member=False)
    body = {"content": "hi"}
    async with client(fake, fake.bot_token, "http://chatwoot/api/v1/accounts/2") as bot2:
        assert (await bot2.post("conversations/1/messages", json=body)).status_code == 401
    async with client(fake, fake.user_token, "http://chatwoot/api/v1/accounts/2") as user2:
        assert (await user2.post("conversations/1/messages", json=body)).status_code == 401
    async with client(fake, fake.user_token, "http://chatwoot/api/v1/accounts/3") as user3:
        assert (await user3.post("conversations/1/messages", json=body)).status_code == 404


@pytest.mark.anyio
async def test_labels_post_replaces_the_set(fake, bot):
    """POST labels replaces the conversation's labels; GET returns the new set."""
    fake.add_conversation(1, 5, labels=["vip", "billing"])
    posted = await bot.post("conversations/5/labels", json={"labels": ["pedido", "pedido"]})
    assert posted.json() == {"payload": ["pedido"]}
    assert (await bot.get("conversations/5/labels")).json() == {"payload": ["pedido"]}
    assert fake.labels(5) == ["pedido"]


@pytest.mark.anyio
async def test_labels_and_show_are_401_for_bots_before_4_14_2():
    """With labels_for_bots=False a bot gets 401 on labels and GET conversation, not messages."""
    old = FakeChatwoot(labels_for_bots=False)
    old.add_conversation(1, 5, labels=["vip"])
    async with client(old, old.bot_token) as bot, client(old, old.user_token) as user:
        assert (await bot.get("conversations/5/labels")).status_code == 401
        assert (await bot.post("conversations/5/labels", json={"labels": []})).status_code == 401
        assert (await bot.get("conversations/5")).json() == NOT_FOR_BOTS
        assert (
            await bot.post("conversations/5/messages", json={"content": "hi"})
        ).status_code == 200
        assert (await user.get("conversations/5/labels")).json() == {"payload": ["vip"]}
    assert old.labels(5) == ["vip"]


@pytest.mark.parametrize(
    ("items", "error"),
    [
        ([{"id": "a", "title": "A", "value": "a"}], "contains invalid keys for items : [:id]"),
        ([{"title": "A", "value": "a", "description": "x"}], "[:description]"),
        ([], "At least one item is required."),
    ],
    ids=["id-key", "description-key", "empty"],
)
@pytest.mark.anyio
async def test_input_select_items_are_checked(fake, bot, items, error):
    """input_select items with keys other than title/value, or none at all, are a 422."""
    body = {
        "content": "Menu",
        "content_type": "input_select",
        "content_attributes": {"items": items},
    }
    response = await bot.post("conversations/5/messages", json=body)
    assert response.status_code == 422
    assert error in response.json()["error"]
    assert fake.messages(5) == []
    assert fake.violations == []


@pytest.mark.anyio
async def test_created_message_is_rendered_like_chatwoot(fake, bot):
    """A created message answers with an int message_type and the bot as sender."""
    body = {
        "content": "Menu",
        "content_type": "input_select",
        "content_attributes": {"items": ITEMS},
    }
    first = (await bot.post("conversations/5/messages", json=body)).json()
    second = (await bot.post("conversations/5/messages", json={"content": "again"})).json()
    assert first["message_type"] == 1
    assert first["sender"] == {"id": 1, "name": "Bot", "avatar_url": "", "type": "agent_bot"}
    assert first["content_attributes"] == {"items": ITEMS}
    assert (first["conversation_id"], first["private"]) == (5, False)
    assert second["id"] > first["id"]
    assert [m["content"] for m in fake.messages(5)] == ["Menu", "again"]


@pytest.mark.anyio
async def test_source_id_and_private_messages_are_not_sent_to_the_channel(fake, bot):
    """A message with a source_id is accepted but flagged as not sent; so is a private note."""
    await bot.post("conversations/5/messages", json={"content": "a", "source_id": "wamid.X"})
    await bot.post("conversations/5/messages", json={"content": "b", "private": True})
    await bot.post("conversations/5/messages", json={"content": "c"})
    assert [m["sent_to_channel"] for m in fake.messages(5)] == [False, False, True]


@pytest.mark.anyio
async def test_incoming_messages_only_in_api_inboxes(fake, bot):
    """message_type incoming is refused outside API inboxes, as MessageBuilder does."""
    response = await bot.post(
        "conversations/5/messages", json={"content": "x", "message_type": "incoming"}
    )
    assert response.status_code == 422


@pytest.mark.anyio
async def test_custom_attributes_post_replaces_the_hash(fake, bot):
    """POST custom_attributes replaces the whole hash rather than merging."""
    fake.add_conversation(1, 5, custom_attributes={"order_id": "4417", "step": "menu"})
    response = await bot.post(
        "conversations/5/custom_attributes", json={"custom_attributes": {"a": 1}}
    )
    assert response.json() == {"custom_attributes": {"a": 1}}
    assert fake.custom_attributes(5) == {"a": 1}


@pytest.mark.anyio
async def test_contact_update_merges_custom_attributes(fake, user):
    """PUT and PATCH contacts merge custom_attributes (PATCH is an alias the doc omits)."""
    fake.add_contact(1, 9, custom_attributes={"plan": "pro"})
    await user.put("contacts/9", json={"custom_attributes": {"city": "Recife"}})
    patched = await user.patch("contacts/9", json={"custom_attributes": {"plan": "free"}})
    assert patched.json()["payload"]["custom_attributes"] == {"plan": "free", "city": "Recife"}
    assert fake.violations == []


@pytest.mark.anyio
async def test_flood_guard_allows_200_messages_a_minute():
    """The 201st message within 60 s is a 422; once the clock moves on, sending works again."""
    clock = [1000.0]
    fake = FakeChatwoot(now=lambda: clock[0])
    async with client(fake, fake.bot_token) as bot:
        for i in range(200):
            assert (
                await bot.post("conversations/5/messages", json={"content": f"{i}"})
            ).status_code == 200
            clock[0] += 0.25
        flooded = await bot.post("conversations/5/messages", json={"content": "one too many"})
        assert flooded.status_code == 422
        assert "Too many messages" in flooded.json()["error"]
        clock[0] += 60
        assert (
            await bot.post("conversations/5/messages", json={"content": "later"})
        ).status_code == 200
    assert len(fake.messages(5)) == 201


@pytest.mark.parametrize(
    ("token", "before", "body", "after", "success"),
    [
        ("bot", "pending", {"status": "open"}, "open", None),
        ("user", "pending", {"status": "open"}, "open", True),
        ("bot", "open", {}, "resolved", True),
        ("bot", "resolved", {}, "open", True),
        ("bot", "pending", {}, "open", True),
        ("bot", "open", {"status": "pending"}, "pending", True),
    ],
    ids=["bot-handoff", "user-open", "toggle-open", "toggle-resolved", "toggle-pending", "set"],
)
@pytest.mark.anyio
async def test_toggle_status(fake, token, before, body, after, success):
    """toggle_status follows docs/chatwoot.md §4: no status toggles; a bot's handoff: null."""
    fake.add_conversation(1, 5, status=before)
    async with client(fake, fake.bot_token if token == "bot" else fake.user_token) as c:
        response = await c.post("conversations/5/toggle_status", json=body)
    assert response.json() == {
        "meta": {},
        "payload": {
            "success": success,
            "conversation_id": 5,
            "current_status": after,
            "snoozed_until": None,
        },
    }
    assert fake.status(5) == after
    assert fake.violations == []


@pytest.mark.anyio
async def test_snooze_until_is_kept_and_cleared(fake, bot):
    """Snoozing with snoozed_until reports an ISO time; leaving snoozed clears it."""
    body = {"status": "snoozed", "snoozed_until": 1781964131}
    snoozed = (await bot.post("conversations/5/toggle_status", json=body)).json()["payload"]
    assert snoozed["snoozed_until"] == "2026-06-20T14:02:11.000Z"
    opened = (await bot.post("conversations/5/toggle_status", json={"status": "open"})).json()[
        "payload"
    ]
    assert opened["snoozed_until"] is None


@pytest.mark.anyio
async def test_unknown_conversation_is_404_unless_autocreated():
    """Without autocreate an unknown conversation is 404; with it, it appears pending."""
    strict = FakeChatwoot(autocreate=False)
    async with client(strict, strict.bot_token) as bot:
        response = await bot.post("conversations/77/messages", json={"content": "hi"})
    assert (response.status_code, response.json()) == (
        404,
        {"error": "Resource could not be found"},
    )
    lenient = FakeChatwoot()
    async with client(lenient, lenient.bot_token) as bot:
        assert (await bot.get("conversations/77")).json()["status"] == "pending"
    assert lenient.status(77) == "pending"


@pytest.mark.anyio
async def test_assignments_typing_and_priority(fake, bot):
    """A bot can assign an agent, a team or a bot, set typing and set priority."""
    fake.add_agent(7, name="Ana")
    fake.add_team(1, 3)
    fake.add_conversation(1, 5)
    assert (await bot.post("conversations/5/assignments", json={"assignee_id": 7})).json()[
        "id"
    ] == 7
    assert fake.assignee(5) == ("User", 7)
    await bot.post("conversations/5/assignments", json={"team_id": 3})
    assert fake.team(5) == 3
    await bot.post(
        "conversations/5/assignments", json={"assignee_id": 1, "assignee_type": "AgentBot"}
    )
    assert fake.assignee(5) == ("AgentBot", 1)
    assert (await bot.post("conversations/5/assignments", json={"assignee_id": 99})).json() is None
    assert fake.assignee(5) is None
    typing = await bot.post("conversations/5/toggle_typing_status", json={"typing_status": "on"})
    assert (typing.status_code, typing.content) == (200, b"")
    await bot.post("conversations/5/toggle_priority", json={"priority": "urgent"})
    assert (fake.typing_status(5), fake.priority(5)) == ("on", "urgent")
    assert fake.violations == []


@pytest.mark.anyio
async def test_openapi_violations_are_recorded(fake, bot, user):
    """An invalid body is 422 and an unknown path 404, and both are recorded as violations."""
    bad = await bot.post("conversations/5/toggle_status", json={"status": "closed"})
    assert bad.status_code == 422
    assert fake.status(5) == "pending"
    assert (await bot.post("conversations/5/labels/add", json={"labels": []})).status_code == 404
    assert (await user.get("conversations/five")).status_code == 404
    assert (await user.post("agent_bots/1/reset_secret")).status_code == 404
    violations = fake.violations
    assert len(violations) == 4
    assert "'closed' is not one of" in violations[0]
    assert "no such operation" in violations[1]
    assert "conversation_id='five'" in violations[2]
    fake.clear_violations()
    assert fake.violations == []


@pytest.mark.anyio
async def test_message_body_must_match_the_schema(fake, bot):
    """A message without content, or with content_attributes as a string, breaks the schema."""
    assert (await bot.post("conversations/5/messages", json={"private": True})).status_code == 422
    as_string = {"content": "x", "content_attributes": '{"items": []}'}
    assert (await bot.post("conversations/5/messages", json=as_string)).status_code == 422
    assert len(fake.violations) == 2
    assert fake.messages(5) == []


def test_openapi_document_must_be_found(tmp_path: Path):
    """A missing document is an error naming CHATWOOT_OPENAPI; the variable comes before the
    copy in tests/samples."""
    missing = tmp_path / "missing.json"
    with pytest.raises(OpenApiNotFound, match="CHATWOOT_OPENAPI"):
        locate_openapi(environ={"CHATWOOT_OPENAPI": str(missing)}, vendored=None)
    named = tmp_path / "named.json"
    named.write_bytes(VENDORED_OPENAPI_PATH.read_bytes())
    assert locate_openapi(environ={"CHATWOOT_OPENAPI": str(named)}) == named
    assert locate_openapi(environ={}) == VENDORED_OPENAPI_PATH
    with pytest.raises(OpenApiNotFound):
        FakeChatwoot(openapi=missing)


@pytest.mark.anyio
async def test_agent_bot_crud_and_inbox_connection(fake, user):
    """A user token creates a bot with a string token and secret, connects it, and deletes it."""
    body = {"name": "Flows", "outgoing_url": "https://bot.example/webhook", "bot_type": "webhook"}
    created = (await user.post("agent_bots", json=body)).json()
    assert isinstance(created["access_token"], str)
    assert isinstance(created["secret"], str)
    assert created["bot_type"] == "webhook"
    bot_id = created["id"]
    assert (await user.patch(f"agent_bots/{bot_id}", json={"name": "Flows 2"})).json()[
        "name"
    ] == "Flows 2"
    assert [b["id"] for b in (await user.get("agent_bots")).json()] == [1, bot_id]
    connected = await user.post("inboxes/1/set_agent_bot", json={"agent_bot": bot_id})
    assert (connected.status_code, connected.content) == (200, b"")
    assert (await user.get("inboxes/1/agent_bot")).json()["agent_bot"]["id"] == bot_id
    assert (await user.get("inboxes")).json()["payload"][0]["channel_type"] == "Channel::Whatsapp"
    async with client(fake, created["access_token"]) as new_bot:
        assert (
            await new_bot.post("conversations/5/messages", json={"content": "hi"})
        ).status_code == 200
        assert (await user.delete(f"agent_bots/{bot_id}")).status_code == 200
        assert (
            await new_bot.post("conversations/5/messages", json={"content": "hi"})
        ).status_code == 401
    assert fake.inbox_agent_bot(1) is None
    assert (await user.get("inboxes/1/agent_bot")).json() == {"agent_bot": {}}
    assert fake.violations == []


@pytest.mark.anyio
async def test_requests_are_recorded():
    """Every request is recorded with its method, path, JSON body, headers and clock time."""
    fake = FakeChatwoot(now=lambda: 42.0)
    async with client(fake, fake.bot_token) as bot:
        await bot.post("conversations/5/labels", json={"labels": ["a"]})
    [recorded] = fake.requests
    assert (recorded.method, recorded.path) == ("POST", "/api/v1/accounts/1/conversations/5/labels")
    assert (recorded.json, recorded.at, recorded.status) == ({"labels": ["a"]}, 42.0, 200)
    assert recorded.headers["api_access_token"] == "bot-token"


def test_fail_next_over_real_http():
    """fail_next answers the next n requests with the given status and headers, then recovers."""
    fake = FakeChatwoot()
    fake.fail_next(2, status=429, body={"error": "slow down"}, headers={"Retry-After": "1"})
    with (
        FakeChatwootServer(fake) as server,
        httpx.Client(base_url=server.url, headers={"api_access_token": "bot-token"}) as http,
    ):
        path = "/api/v1/accounts/1/conversations/5/messages"
        answers = [http.post(path, json={"content": "hi"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["retry-after"] == "1"
    assert answers[0].json() == {"error": "slow down"}
    assert len(fake.messages(5)) == 1
    assert [r.status for r in fake.requests] == [429, 429, 200]


def test_server_stops_and_restarts_on_the_same_port():
    """While stopped the port refuses connections; after start() it serves the same state."""
    fake = FakeChatwoot()
    server = FakeChatwootServer(fake)
    path = "/api/v1/accounts/1/conversations/5/messages"
    with httpx.Client(headers={"api_access_token": "bot-token"}, timeout=2) as http:
        with server:
            url = server.url
            assert http.post(url + path, json={"content": "one"}).status_code == 200
        with pytest.raises(httpx.ConnectError):
            http.post(url + path, json={"content": "lost"})
        with server:
            assert server.url == url
            assert http.post(url + path, json={"content": "two"}).status_code == 200
    assert [m["content"] for m in fake.messages(5)] == ["one", "two"]


def test_delay_makes_a_client_time_out():
    """With a delay the client times out; stopping the server cuts the pending request cleanly."""
    fake = FakeChatwoot()
    fake.delay = 5.0
    with (
        FakeChatwootServer(fake) as server,
        httpx.Client(base_url=server.url, timeout=0.1) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.get("/api/v1/accounts/1/inboxes", headers={"api_access_token": "user-token"})
    [pending] = fake.requests
    assert pending.status is None


@pytest.mark.anyio
async def test_fake_renders_liquid_and_flags_what_liquid_changed(fake, bot):
    """The fake keeps what Chatwoot's Liquid makes of an outgoing message, and records a
    violation when a bot's message does not come out as the text it stands for."""
    from agentbot.channels import liquid_safe

    fake.add_conversation(1, 5)
    for content in (liquid_safe("{{contact.phone_number}}"), "{{ 'x' | upcase }}"):
        sent = await bot.post("conversations/5/messages", json={"content": content})
        assert sent.status_code == 200
    assert [m["content"] for m in fake.messages(5)] == ["{{contact.phone_number}}", "X"]
    assert len(fake.violations) == 1
    assert "Liquid made \"{{ 'x' | upcase }}\" into 'X'" in fake.violations[0]
