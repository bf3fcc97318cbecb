"""The sandbox: the engine plus what the shell and Chatwoot would do with its actions."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from agentbot import engine
from agentbot.events import Contact, Conversation
from agentbot.loader import parse_flow
from agentbot.sandbox import Said, Sandbox, channel_name

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)

FLOW = parse_flow(
    textwrap.dedent(
        """
        name: caixa
        inactivity: {after: 1h}
        blocks:
          inicio:
            message: "Qual plano, {{nome}}?"
            tags: [novo]
            input: {save_as: plano}
            save_to: contact.custom_attributes.plano
            next_block: confirmar
          confirmar:
            message: "Plano {{contact.custom_attributes.plano}}. Confirma?"
            tags: [novo, plano]
            buttons:
              - {text: Sim, next_block: crm}
              - {text: Não, next_block: fim}
            timeout: {after: 10m, next_block: lembrete}
          lembrete:
            message: "Ainda está aí?"
            buttons: [{text: Sim, next_block: crm}]
          crm:
            webhook: {url: "https://crm.example/x", save_as: crm}
            next_block: fim
          fim:
            message: "Tchau {{crm.id}}"
            end: {resolve: true}
        """
    ),
    "caixa.yaml",
)


def sandbox(channel: str = "Channel::Whatsapp") -> Sandbox:
    conversation = Conversation(
        account_id=1, id=5, inbox_id=1, status="pending", channel=channel, labels=("vip",)
    )
    return Sandbox(FLOW, NOW, contact=Contact(id=2, name="Ana"), conversation=conversation)


def texts(box: Sandbox, actions: tuple[engine.Action, ...]) -> list[str]:
    return [said.text for action in actions for said in box.shown(action)]


def test_labels_and_attributes_are_kept_as_chatwoot_would() -> None:
    """Labels are added once, beside those already there; a saved attribute is in the next
    event's payload, so templates see it."""
    box = sandbox()
    box.say("Oi")
    actions = box.say("pro")
    assert texts(box, actions) == ["Plano pro. Confirma?"]
    assert box.labels == ["novo", "plano"]
    assert box.conversation.labels == ("vip", "novo", "plano")
    assert box.attribute("contact.custom_attributes.plano") == "pro"
    assert box.attribute("conversation.custom_attributes.plano") is None
    box.say("talvez")  # a miss: the question again, rendered from the payload's attributes
    assert box.history[-1] == engine.SendOptions(
        "Não entendi. Por favor, escolha uma das opções:\n\nPlano pro. Confirma?",
        (engine.Option("Sim", "sim"), engine.Option("Não", "nao")),
        "confirmar",
    )


def test_webhook_calls_wait_for_their_answer() -> None:
    """A call waits in order until answered; an answer of 400 or more is an error; the flow's
    resolve makes the conversation resolved, and the next message reopens it."""
    box = sandbox()
    box.say("Oi")
    box.say("pro")
    box.say("Sim")
    assert box.waits_for_webhook
    assert [call.url for call in box.calls] == ["https://crm.example/x"]
    actions = box.answer(status=200, data={"id": 7})
    assert texts(box, actions) == ["Tchau 7"]
    assert (box.status, len(box.calls), box.waits_for_webhook) == ("resolved", 0, False)
    with pytest.raises(IndexError):
        box.answer(status=200, data=None)
    box.say("Oi de novo")
    assert box.status == "pending"
    assert box.session is not None
    assert box.session.block == "inicio"


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [(503, None, "webhook failed: answered 503"), (None, "timed out", "webhook failed: timed out")],
    ids=["status", "no-answer"],
)
def test_failed_webhook_hands_off_and_the_bot_goes_quiet(
    status: int | None, error: str | None, reason: str
) -> None:
    """A failed call without on_error hands off; from then on the customer gets no answer."""
    box = sandbox()
    for text in ("Oi", "pro", "Sim"):
        box.say(text)
    actions = box.answer(status=status, data=None, error=error)
    assert engine.Handoff(reason, "crm") in actions
    assert (box.status, box.quiet) == ("open", True)
    assert box.say("alô") == ()


def test_wait_fires_each_deadline_at_its_own_time() -> None:
    """The block timeout fires 10 minutes in, the inactivity deadline an hour after the last
    message; the clock ends where the wait ends."""
    box = sandbox()
    box.say("Oi")
    box.say("pro")
    assert box.wait(timedelta(minutes=9)) == ()
    actions = box.wait(timedelta(minutes=2))
    assert texts(box, actions) == ["Ainda está aí?"]
    assert box.now == NOW + timedelta(minutes=11)
    actions = box.wait(timedelta(hours=2))
    assert actions == ()
    assert box.session is not None
    assert box.session.status is engine.Status.ABANDONED
    assert box.wait(timedelta(hours=1)) == ()


def test_start_with_initial_data() -> None:
    """A proactive start enters the start block with the initial data as variables."""
    box = sandbox()
    actions = box.start({"origem": "site"})
    assert texts(box, actions) == ["Qual plano, Ana?"]
    assert box.session is not None
    assert box.session.variables == {"origem": "site"}


@pytest.mark.parametrize(
    ("channel", "said"),
    [
        ("Channel::Whatsapp", Said("Plano pro. Confirma?", ("Sim", "Não"), "confirmar")),
        (
            "Channel::Sms",
            Said("Plano pro. Confirma?\n\n1. Sim\n2. Não", ("Sim", "Não"), "confirmar"),
        ),
    ],
    ids=["buttons", "numbered-text"],
)
def test_questions_are_shown_as_the_channel_shows_them(channel: str, said: Said) -> None:
    """Buttons where the channel has them, else the options numbered in the text."""
    box = sandbox(channel)
    box.say("Oi")
    actions = box.say("pro")
    assert [s for action in actions for s in box.shown(action)] == [said]
    assert box.shown(engine.AddLabels(("x",), "inicio")) == []


@pytest.mark.parametrize(
    ("name", "full"),
    [
        ("whatsapp", "Channel::Whatsapp"),
        (" SMS ", "Channel::Sms"),
        ("Channel::Api", "Channel::Api"),
    ],
    ids=["short", "case-and-spaces", "full-name"],
)
def test_channel_names(name: str, full: str) -> None:
    """Short channel names stand for Chatwoot's; a full name is kept."""
    assert channel_name(name) == full


def test_wait_without_deadlines_only_moves_the_clock() -> None:
    """A session with no timeout and no inactivity waits as long as it takes."""
    flow = parse_flow("blocks: {a: {message: Oi, buttons: [{text: Sim}]}}", "a.yaml")
    box = Sandbox(flow, NOW)
    box.say("Oi")
    assert box.wait(timedelta(days=30)) == ()
    assert box.now == NOW + timedelta(days=30)
