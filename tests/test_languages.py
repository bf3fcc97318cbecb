"""Flows in several languages: texts per language, the language chosen, and what check reports."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any

import pytest

from agentbot.engine import (
    Handoff,
    Option,
    Outcome,
    PrivateNote,
    SendOptions,
    SendText,
    Session,
    Status,
    Waiting,
    language,
    snapshot,
    start,
    step,
)
from agentbot.errors import FlowError
from agentbot.events import Contact, Conversation, CustomerMessage
from agentbot.flows import DEFAULT_HANDOFF_MESSAGE, DEFAULT_RETRY_MESSAGE
from agentbot.loader import parse_flow

NOW = datetime(2026, 6, 20, 14, 0, tzinfo=UTC)
FILE = "flows/idiomas.yaml"

FLOW = parse_flow(
    textwrap.dedent(
        """
        name: idiomas
        languages: [pt, en]
        messages:
          retry: {pt: "Não entendi.", en: "Sorry, I did not get that."}
          handoff: {pt: "Vou chamar alguém.", en: "Calling someone."}
        blocks:
          inicio:
            message: {pt: "Oi {{nome}}! Vamos?", en: "Hi {{nome}}! Shall we?"}
            buttons:
              - {text: {pt: Sim, en: "Yes"}, next_block: email}
              - {text: English, next_block: ingles}
          ingles:
            set: {language: en}
            next_block: inicio
          email:
            message: {pt: "Seu e-mail?", en: "Your e-mail?"}
            input:
              save_as: email
              type: email
              error_message: {pt: "E-mail inválido.", en: "Not an e-mail."}
              retries: 3
            next_block: fim
          fim:
            message: Ok!
        """
    ),
    FILE,
)
ONE_LANGUAGE = parse_flow("blocks: {a: {message: Oi}}\n", FILE)


def names(
    variable: Any = None, conversation: Any = None, contact: Any = None, chatwoot: Any = None
) -> dict[str, Any]:
    """What templates see, with `language` in the variables and the custom attributes, and
    the language Chatwoot gives the conversation."""
    found: dict[str, Any] = {
        "conversation": {"custom_attributes": {"language": conversation}, "language": chatwoot},
        "contact": {"custom_attributes": {"language": contact}},
    }
    if variable is not None:
        found["language"] = variable
    return found


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (names(), "pt"),
        (names(variable="en", conversation="pt", contact="pt"), "en"),
        (names(conversation="en-US", contact="pt"), "en"),
        (names(conversation="EN_us"), "en"),
        (names(contact="en"), "en"),
        (names(contact="pt", chatwoot="en"), "pt"),
        (names(chatwoot="en-GB"), "en"),
        (names(variable="fr", conversation=7, contact="de"), "pt"),
        ({}, "pt"),
    ],
)
def test_the_language_spoken(scope: dict[str, Any], expected: str) -> None:
    """The flow's choice (`language`), else the conversation's, else the contact's attribute,
    when it is one of the flow's languages (region ignored); else the first language."""
    assert language(FLOW, scope) == expected


def test_a_flow_without_languages_has_none() -> None:
    """A flow in one language speaks no particular language."""
    assert language(ONE_LANGUAGE, names(variable="en")) is None


CONVERSATION = Conversation(
    account_id=1, id=7, inbox_id=1, status="pending", channel="Channel::Api"
)


def contact(lang: str | None) -> Contact:
    """Ana, with a `language` custom attribute when given."""
    return Contact(id=3, name="Ana", custom_attributes={"language": lang} if lang else {})


def say(text: str, lang: str | None = None) -> CustomerMessage:
    """Ana writes `text`."""
    return CustomerMessage(
        message_id=1, text=text, contact=contact(lang), conversation=CONVERSATION
    )


def at(block: str, waiting: Waiting, lang: str | None = None, **variables: Any) -> Session:
    """A session resting on `block`."""
    return Session(
        flow=FLOW.name,
        version=FLOW.version,
        block=block,
        status=Status.ACTIVE,
        variables=variables,
        waiting=waiting,
        context=snapshot(contact(lang), CONVERSATION),
    )


def test_texts_and_options_in_the_contacts_language() -> None:
    """The message and the button titles are the contact's language; the default otherwise."""
    [english] = step(FLOW, None, say("hello", "en"), NOW).actions
    assert english == SendOptions(
        "Hi Ana! Shall we?", (Option("Yes", "sim"), Option("English", "english")), "inicio"
    )
    [portuguese] = step(FLOW, None, say("oi"), NOW).actions
    assert portuguese == SendOptions(
        "Oi Ana! Vamos?", (Option("Sim", "sim"), Option("English", "english")), "inicio"
    )


def test_a_choice_in_the_flow_sets_the_language() -> None:
    """A button leading to `set: {language: en}` switches the rest of the conversation."""
    result = step(FLOW, at("inicio", Waiting.BUTTONS), say("English"), NOW)
    assert result.session is not None
    assert result.session.variables == {"language": "en"}
    [again] = result.actions
    assert isinstance(again, SendOptions)
    assert again.text == "Hi Ana! Shall we?"
    started = start(
        FLOW, NOW, variables={"language": "en"}, context=snapshot(contact(None), CONVERSATION)
    )
    assert [a.text for a in started.actions if isinstance(a, SendOptions)] == ["Hi Ana! Shall we?"]


def test_a_reply_in_any_language_picks_the_button() -> None:
    """ "yes" picks the button titled Sim in Portuguese, whatever language is spoken."""
    result = step(FLOW, at("inicio", Waiting.BUTTONS), say("yes"), NOW)
    assert (result.outcome, result.choice) == (Outcome.CHOSE, "sim")
    assert result.actions == (SendText("Seu e-mail?", "email"),)


def test_misses_and_handoffs_in_the_language() -> None:
    """The retry hint, an input's error message and the handoff text follow the language."""
    result = step(FLOW, at("inicio", Waiting.BUTTONS, "en"), say("hmm", "en"), NOW)
    [hint] = result.actions
    assert isinstance(hint, SendOptions)
    assert hint.text == "Sorry, I did not get that.\n\nHi Ana! Shall we?"
    result = step(FLOW, at("email", Waiting.INPUT, "en"), say("nope", "en"), NOW)
    assert result.actions == (SendText("Not an e-mail.\n\nYour e-mail?", "email"),)
    result = step(FLOW, at("email", Waiting.INPUT), say("nope"), NOW)
    assert result.actions == (SendText("E-mail inválido.\n\nSeu e-mail?", "email"),)
    result = step(FLOW, at("email", Waiting.INPUT, "en"), say("agent", "en"), NOW)
    assert result.actions[0] == SendText("Calling someone.", "email")
    assert isinstance(result.actions[-1], Handoff)
    assert not any(isinstance(a, PrivateNote) for a in result.actions)


def test_defaults_when_a_text_is_not_given_per_language() -> None:
    """Without `messages:` the built-in texts are used in every language."""
    flow = parse_flow(
        "languages: [pt, en]\nblocks:\n  a:\n    message: {pt: Oi, en: Hi}\n"
        "    buttons: [{text: Ok}]\n",
        FILE,
    )
    session = Session(
        flow=flow.name,
        version=flow.version,
        block="a",
        status=Status.ACTIVE,
        waiting=Waiting.BUTTONS,
        context=snapshot(contact("en"), CONVERSATION),
    )
    [hint] = step(flow, session, say("?", "en"), NOW).actions
    assert isinstance(hint, SendOptions)
    assert hint.text == f"{DEFAULT_RETRY_MESSAGE}\n\nHi"
    assert step(flow, session, say("humano"), NOW).actions[0] == SendText(
        DEFAULT_HANDOFF_MESSAGE, "a"
    )


def problems(text: str) -> list[str]:
    """The problems the loader reports for `text`, without the file name."""
    with pytest.raises(FlowError) as info:
        parse_flow(textwrap.dedent(text).lstrip("\n"), FILE)
    return [str(p).removeprefix(f"{FILE}:") for p in info.value.problems]


def test_check_reports_texts_missing_in_a_language() -> None:
    """Every text given per language needs each of the flow's languages; only those."""
    assert problems(
        """
        languages: [pt, en, pt]
        messages: {retry: {pt: "Hein?"}}
        blocks:
          a:
            message: {pt: Oi, es: Hola}
            input: {save_as: x, error_message: {en: "Again"}}
            buttons:
              - {text: {pt: Sim, en: Yes}}
              - {text: {pt: "Uma opção longa demais aqui", en: "Sim"}}
        """
    ) == [
        "1: languages[2]: language 'pt' is listed twice",
        "2: messages.retry: retry has no text in 'en', a language of the flow",
        "5: blocks.a.message.es: 'es' is not one of the flow's languages (pt, en)",
        "5: blocks.a.message: message has no text in 'en', a language of the flow",
        "6: blocks.a.input.error_message: error_message has no text in 'pt', a language of"
        " the flow",
        "8: blocks.a.buttons[0].text.en: expected a string, got true (quote it: YAML reads yes,"
        " no, on and off as true or false)",
        "9: blocks.a.buttons[1].text.pt: text is 27 characters; WhatsApp reply buttons"
        " (3 or fewer) allow at most 20",
        "9: blocks.a.buttons[1].text.en: same text as buttons[0] once case, accents and spaces"
        " are ignored",
    ]


def test_texts_per_language_need_the_flows_languages() -> None:
    """A text given per language in a flow without `languages:` says what to add."""
    assert problems(
        """
        languages: [portugues, 1]
        blocks:
          a:
            message: {pt: Oi}
            buttons: [{text: Sim, aliases: [claro, Sim]}, {text: Não, aliases: [claro]}]
        """
    ) == [
        "1: languages[0]: 'portugues' is not a language code like pt, en or pt_BR",
        "1: languages[1]: expected a string, got the number 1 (quote it)",
        "4: blocks.a.message: message per language needs the flow's languages: add"
        " languages: [...] at the top (the first is the default)",
        "5: blocks.a.buttons[1].aliases[0]: alias 'claro' is already a title or alias of"
        " buttons[0]",
    ]
