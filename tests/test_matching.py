"""Replies in the customer's own words: exact, alias, position, contained, typo, ambiguous."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentbot.engine import Outcome, SendOptions, Session, Status, Waiting, snapshot, step
from agentbot.events import Contact, Conversation, CustomerMessage, OptionSubmitted
from agentbot.flowchecks import flow_warnings
from agentbot.flows import DEFAULT_RETRY_MESSAGE, Button
from agentbot.loader import parse_flow
from agentbot.matching import confusable, match

NOW = datetime(2026, 6, 20, 14, 0, tzinfo=UTC)


def button(text: str, value: str, *aliases: str, **translations: str) -> Button:
    """A button as the loader builds it."""
    return Button(text, value, None, (), aliases, translations)


YES_NO = (button("Sim", "sim", "claro", "pode ser"), button("Não", "nao"))
PLANS = (
    button("Plano básico", "basico"),
    button("Plano pro", "pro"),
    button("Plano", "plano"),
)
TWINS = (button("Plano A", "a"), button("Plano B", "b"))

MATCHES = [
    # exact: title, value, accents and case ignored, position
    (YES_NO, "sim", "exact", "sim"),
    (YES_NO, "  NAO ", "exact", "nao"),
    (YES_NO, "2", "position", "nao"),
    # alias
    (YES_NO, "Claro", "alias", "sim"),
    (YES_NO, "pode  ser", "alias", "sim"),
    # contained: the reply names exactly one option, in whole words
    (YES_NO, "sim, quero", "contained", "sim"),
    (YES_NO, "claro que sim!", "contained", "sim"),
    (PLANS, "quero o plano básico", "contained", "basico"),
    (PLANS, "o plano pro por favor", "contained", "pro"),
    (PLANS, "só o plano", "contained", "plano"),
    (YES_NO, "simulação", "none", None),  # "sim" inside a word is no option
    # typo: a small edit distance from one option
    (YES_NO, "simm", "typo", "sim"),
    (YES_NO, "naoo", "typo", "nao"),
    (PLANS, "plano basicp", "typo", "basico"),
    (PLANS, "quero o plano basicoo", "typo", "basico"),
    # ambiguous: two options named, or within a typo of two: nothing is picked
    (YES_NO, "sim e não", "ambiguous", None),
    (TWINS, "plano c", "ambiguous", None),
    # none
    (YES_NO, "talvez", "none", None),
    (YES_NO, "", "none", None),
]


@pytest.mark.parametrize(("buttons", "reply", "kind", "value"), MATCHES)
def test_matching_in_the_customers_words(
    buttons: tuple[Button, ...], reply: str, kind: str, value: str | None
) -> None:
    """Each reply is read by the first rule that finds anything, and never picks between two."""
    found = match(buttons, [reply])
    assert found.kind == kind
    assert (found.button.value if found.button is not None else None) == value


def test_positions_and_loose_matching_can_be_left_out() -> None:
    """A block with free-text input gets exact matches only, and its digits stay answers."""
    assert match(YES_NO, ["2"], positions=False).kind == "none"
    assert match(YES_NO, ["sim, quero"], loose=False).kind == "none"
    assert match(YES_NO, ["x", "Sim"]).kind == "exact"  # a click: value, then title


def test_titles_in_every_language_match() -> None:
    """A button's title in any of the flow's languages picks it."""
    yes = button("Sim", "sim", pt="Sim", en="Yes")
    assert match((yes,), ["yes"]).kind == "exact"
    assert match((yes,), ["yes please"]).kind == "contained"
    assert yes.title("en") == "Yes"
    assert yes.title(None) == "Sim"


def test_confusable_titles_and_aliases() -> None:
    """Titles or aliases of one question a single typo away from each other are listed."""
    assert confusable(TWINS) == [(0, "Plano A", 1, "Plano B")]
    assert confusable(YES_NO) == []
    assert confusable((button("Sim", "s", "certo"), button("Cert", "c"))) == [
        (0, "certo", 1, "Cert")
    ]


def test_check_warns_about_confusable_options() -> None:
    """`agentbot check` warns when two options of a question can be confused by a typo."""
    flow = parse_flow(
        "blocks:\n"
        "  a:\n"
        "    message: Qual?\n"
        "    buttons:\n"
        "      - {text: Plano A, next_block: b}\n"
        "      - {text: Plano B, aliases: [o bê], next_block: b}\n"
        "  b: {message: Ok}\n",
        "flows/x.yaml",
    )
    assert [str(w) for w in flow_warnings(flow, "flows/x.yaml")] == [
        "flows/x.yaml:6: blocks.a.buttons[1]: 'Plano B' can be confused with 'Plano A' of"
        " buttons[0]: a reply with a typo could mean either, and is asked again"
    ]


FLOW = parse_flow(
    """
name: planos
blocks:
  inicio:
    message: Qual plano?
    buttons:
      - {text: Plano básico, next_block: fim, aliases: [o barato]}
      - {text: Plano pro, next_block: fim}
  email:
    message: E-mail?
    buttons: [{text: Pular, next_block: fim}]
    input: {save_as: email, type: email}
    next_block: fim
  fim:
    message: Anotado.
""",
    "flows/planos.yaml",
)
CONVERSATION = Conversation(
    account_id=1, id=7, inbox_id=1, status="pending", channel="Channel::Api"
)
CONTACT = Contact(id=3, name="Ana")


def waiting_at(block: str, waiting: Waiting) -> Session:
    """A session resting on `block`."""
    return Session(
        flow="planos",
        version=FLOW.version,
        block=block,
        status=Status.ACTIVE,
        waiting=waiting,
        context=snapshot(CONTACT, CONVERSATION),
    )


def say(text: str) -> CustomerMessage:
    """The customer writes `text`."""
    return CustomerMessage(
        message_id=1, text=text, contact=CONTACT, conversation=CONVERSATION, in_reply_to=None
    )


@pytest.mark.parametrize(
    ("reply", "outcome", "choice"),
    [
        ("quero o plano básico", Outcome.CHOSE, "plano_basico"),
        ("plano pr0", Outcome.CHOSE, "plano_pro"),
        ("o barato", Outcome.CHOSE, "plano_basico"),
        ("plano básico ou plano pro", Outcome.MISSED, None),
    ],
)
def test_the_engine_reads_the_customers_words(reply: str, outcome: Outcome, choice: str) -> None:
    """A reply naming one option picks it; an ambiguous one is asked again, as a miss."""
    result = step(FLOW, waiting_at("inicio", Waiting.BUTTONS), say(reply), NOW)
    assert (result.outcome, result.choice) == (outcome, choice)
    if outcome is Outcome.MISSED:
        [ask] = result.actions
        assert isinstance(ask, SendOptions)
        assert ask.text == f"{DEFAULT_RETRY_MESSAGE}\n\nQual plano?"


def test_a_block_with_input_takes_buttons_exactly_only() -> None:
    """With free-text input, only an exact title is a shortcut: other text is the answer."""
    session = waiting_at("email", Waiting.INPUT)
    assert step(FLOW, session, say("pular"), NOW).outcome is Outcome.CHOSE
    assert step(FLOW, session, say("pular agora"), NOW).outcome is Outcome.MISSED
    click = OptionSubmitted(
        message_id=2,
        value="pular",
        title="",
        contact=CONTACT,
        conversation=CONVERSATION,
    )
    assert step(FLOW, session, click, NOW).outcome is Outcome.CHOSE
