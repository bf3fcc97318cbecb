"""engine.step(): each branch as a table row, (session, event) -> (session, actions)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentbot.answers import DEFAULT_ERRORS, InputType
from agentbot.engine import (
    CUSTOMER_WROTE_AT,
    AddLabels,
    Assign,
    CallWebhook,
    Handoff,
    Input,
    Option,
    Outcome,
    PrivateNote,
    Resolve,
    SaveAttribute,
    SendOptions,
    SendText,
    Session,
    Status,
    Step,
    TimerFired,
    Waiting,
    WebhookReply,
    choose_flow,
    choose_widget_flow,
    scope,
    snapshot,
    start,
    step,
    summary,
)
from agentbot.events import Contact, Conversation, CustomerMessage, OptionSubmitted
from agentbot.flows import DEFAULT_HANDOFF_MESSAGE, DEFAULT_RETRY_MESSAGE, Flow
from agentbot.loader import parse_flow
from agentbot.matching import match

NOW = datetime(2026, 6, 20, 14, 2, 11, tzinfo=UTC)
LATER = NOW + timedelta(minutes=1)

FLOW_YAML = """
name: vendas
trigger: {default: true}
blocks:
  inicio:
    message: "Oi {{nome}}! Quer um orçamento?"
    buttons:
      - {text: Sim, next_block: email}
      - {text: Não, value: nao, next_block: tchau, tag: lead_frio}
      - {text: Falar com humano, next_block: humano}
  email:
    message: "Qual produto?"
    tags: [interessado]
    buttons:
      - {text: Camiseta, next_block: fim}
      - {text: Caneca}
  tchau:
    message: "Tudo bem, até logo!"
  humano:
    message: "Chamando um atendente."
    tags: [quer_humano]
    handoff: true
  fim:
    message: "Anotado, {{contact.name}}."
    next_block: obrigado
  obrigado:
    message: "Obrigado!"
"""
FLOW = parse_flow(FLOW_YAML, "flows/vendas.yaml")

FORM_YAML = """
name: cadastro
fallback: ajuda
inactivity: {after: 1h, message: "Encerrando, {{nome | first_name}}."}
blocks:
  email:
    set: {origem: whatsapp, plano: "{{contact.custom_attributes.plano}}"}
    message: "Oi {{nome | first_name}}! Seu e-mail? ({{origem}})"
    input: {save_as: email, type: email}
    save_to: contact.custom_attributes.email
    buttons: [{text: Não tenho, next_block: idade}, {text: Pular, tag: sem_email}]
    timeout: {after: 10m, next_block: lembrete}
    next_block: idade
  idade:
    message: "Quantos anos você tem?"
    input:
      save_as: idade
      type: number
      error_message: "Só números, {{nome | first_name}}."
      retries: 3
    save_to: conversation.custom_attributes.idade
    conditions:
      - if: 'idade >= 18 and plano == "pro"'
        next_block: crm
    else: menor
  crm:
    webhook:
      url: "https://crm.example/leads/{{email}}?nome={{nome}}"
      method: POST
      headers: {Authorization: "Bearer s3cr3t", X-Nome: "{{nome}}"}
      body: {email: "{{email}}", idade: "{{idade}}", origem: "{{origem}}"}
      save_as: crm
      on_error: falha
    timeout: {after: 2m, next_block: falha}
    next_block: protocolo
  protocolo:
    message: "Seu protocolo é {{crm.protocolo | default('?')}}."
    handoff: {team_id: 3, assignee_id: 9, note: "Lead de {{origem}}"}
  menor:
    message: "Desculpe, só atendemos maiores de idade."
    end: {resolve: true}
  lembrete:
    message: "Ainda está aí?"
    buttons: [{text: Sim, next_block: email}]
  falha:
    message: "Não consegui registrar agora."
    end: true
  ajuda:
    message: "Vou chamar alguém."
    handoff: true
"""
FORM = parse_flow(FORM_YAML, "flows/cadastro.yaml")

SIMPLE_YAML = """
name: simples
blocks:
  cpf:
    message: "Seu CPF?"
    input: {save_as: cpf, type: cpf}
    next_block: fim
  fim:
    message: "Obrigado"
  hook:
    webhook: {url: "https://x.example/a"}
    next_block: fim
"""
SIMPLE = parse_flow(SIMPLE_YAML, "flows/simples.yaml")

CONV = Conversation(
    account_id=1, id=1287, inbox_id=7, status="pending", channel="Channel::Whatsapp"
)
CONTACT = Contact(
    id=4821,
    name="Maria Silva",
    phone_number="+5511987654321",
    custom_attributes={"plano": "pro"},
)
# what a customer's message at NOW leaves in the session's context
CTX = {**snapshot(CONTACT, CONV), CUSTOMER_WROTE_AT: NOW.isoformat()}


def said(text: str, message_id: int = 1) -> CustomerMessage:
    return CustomerMessage(CONV, CONTACT, message_id, text)


def session_of(flow: Flow, block: str, **changes: Any) -> Session:
    """A session of `flow` at `block`, started at NOW, with the test contact's context."""
    base = Session(flow.name, flow.version, block, Status.ACTIVE, started_at=NOW, context=CTX)
    return replace(base, **changes)


def at(block: str, misses: int = 0, **changes: Any) -> Session:
    """The sales flow resting on a question."""
    return session_of(FLOW, block, misses=misses, waiting=Waiting.BUTTONS, **changes)


def ended(flow: Flow, block: str, status: Status, **changes: Any) -> Session:
    """A session that is no longer active: waiting for nothing, no deadlines."""
    return session_of(flow, block, status=status, **changes)


ASK = SendOptions(
    "Oi Maria Silva! Quer um orçamento?",
    (Option("Sim", "sim"), Option("Não", "nao"), Option("Falar com humano", "falar_com_humano")),
    "inicio",
)
ASK_PRODUCT = SendOptions(
    "Qual produto?", (Option("Camiseta", "camiseta"), Option("Caneca", "caneca")), "email"
)
HINT = replace(ASK, text=f"{DEFAULT_RETRY_MESSAGE}\n\n{ASK.text}")
BYE = SendText(DEFAULT_HANDOFF_MESSAGE, "inicio")
ASKED_HUMAN = "the customer asked for a human"

SALES = [
    pytest.param(
        None, said("Oi"), Step(at("inicio"), (ASK,), Outcome.STARTED, None), id="first-message"
    ),
    pytest.param(
        None,
        said("Atendente"),
        Step(
            ended(FLOW, "inicio", Status.HANDED_OFF),
            (BYE, Handoff(ASKED_HUMAN, "inicio")),
            Outcome.HANDOFF_WORD,
            None,
        ),
        id="handoff-word-first",
    ),
    pytest.param(
        at("inicio"),
        said("  NAO "),
        Step(
            ended(FLOW, "tchau", Status.COMPLETED),
            (AddLabels(("lead_frio",), "inicio"), SendText("Tudo bem, até logo!", "tchau")),
            Outcome.CHOSE,
            "inicio",
            "nao",
        ),
        id="title-case-and-accents-ignored",
    ),
    pytest.param(
        at("inicio"),
        said("1"),
        Step(
            at("email"),
            (AddLabels(("interessado",), "email"), ASK_PRODUCT),
            Outcome.CHOSE,
            "inicio",
            "sim",
        ),
        id="position-number",
    ),
    pytest.param(
        at("inicio"),
        said("falar_com_humano"),
        Step(
            ended(FLOW, "humano", Status.HANDED_OFF),
            (
                AddLabels(("quer_humano",), "humano"),
                SendText("Chamando um atendente.", "humano"),
                Handoff("the flow hands off here", "humano"),
            ),
            Outcome.CHOSE,
            "inicio",
            "falar_com_humano",
        ),
        id="value-telegram-line",
    ),
    pytest.param(
        at("inicio"),
        said("talvez"),
        Step(at("inicio", misses=1), (HINT,), Outcome.MISSED, "inicio"),
        id="first-miss-repeats-with-a-hint",
    ),
    pytest.param(
        at("inicio", misses=1),
        said("sei lá"),
        Step(
            ended(FLOW, "inicio", Status.HANDED_OFF, misses=2),
            (BYE, Handoff("no option matched 2 times", "inicio")),
            Outcome.MISSED,
            "inicio",
        ),
        id="second-miss-hands-off",
    ),
    pytest.param(
        at("inicio", misses=1),
        said("Sim"),
        Step(
            at("email"),
            (AddLabels(("interessado",), "email"), ASK_PRODUCT),
            Outcome.CHOSE,
            "inicio",
            "sim",
        ),
        id="a-match-resets-the-misses",
    ),
    pytest.param(
        at("email"),
        said("humano"),
        Step(
            ended(FLOW, "email", Status.HANDED_OFF),
            (SendText(DEFAULT_HANDOFF_MESSAGE, "email"), Handoff(ASKED_HUMAN, "email")),
            Outcome.HANDOFF_WORD,
            "email",
        ),
        id="handoff-word-mid-flow",
    ),
    pytest.param(
        at("email", misses=1, variables={"x": 1}),
        said("Menu"),
        Step(at("inicio"), (ASK,), Outcome.RESTARTED, "email"),
        id="restart-word-clears-and-starts-over",
    ),
    pytest.param(
        at("email"),
        said("caneca"),
        Step(ended(FLOW, "email", Status.COMPLETED), (), Outcome.CHOSE, "email", "caneca"),
        id="button-without-next-block-and-no-route-completes",
    ),
    pytest.param(
        at("email"),
        said("Camiseta"),
        Step(
            ended(FLOW, "obrigado", Status.COMPLETED),
            (SendText("Anotado, Maria Silva.", "fim"), SendText("Obrigado!", "obrigado")),
            Outcome.CHOSE,
            "email",
            "camiseta",
        ),
        id="blocks-that-wait-for-nothing-chain-until-the-end",
    ),
    pytest.param(
        at("inicio"),
        OptionSubmitted(CONV, CONTACT, 90410, "Não", "nao"),
        Step(
            ended(FLOW, "tchau", Status.COMPLETED),
            (AddLabels(("lead_frio",), "inicio"), SendText("Tudo bem, até logo!", "tchau")),
            Outcome.CHOSE,
            "inicio",
            "nao",
        ),
        id="widget-submitted-value",
    ),
    pytest.param(
        at("inicio"),
        OptionSubmitted(CONV, CONTACT, 90410, "", "atendente"),
        Step(
            ended(FLOW, "inicio", Status.HANDED_OFF),
            (BYE, Handoff(ASKED_HUMAN, "inicio")),
            Outcome.HANDOFF_WORD,
            "inicio",
        ),
        id="widget-value-without-title-is-read-as-text",
    ),
    pytest.param(
        ended(FLOW, "tchau", Status.COMPLETED),
        said("oi de novo"),
        Step(at("inicio"), (ASK,), Outcome.STARTED, None),
        id="a-completed-session-starts-over",
    ),
    pytest.param(
        at("apagado"),
        said("Sim"),
        Step(
            ended(FLOW, "apagado", Status.HANDED_OFF),
            (Handoff("block 'apagado' no longer exists", "apagado"),),
            Outcome.BLOCK_GONE,
            "apagado",
        ),
        id="a-block-gone-from-the-flow-hands-off",
    ),
    pytest.param(
        session_of(FLOW, "tchau"),
        said("Sim"),
        Step(session_of(FLOW, "tchau"), (), Outcome.NOT_WAITING, "tchau"),
        id="resting-on-a-block-that-waits-for-nothing",
    ),
    pytest.param(
        session_of(FLOW, "tchau", context={}),
        said("oi"),
        Step(session_of(FLOW, "tchau"), (), Outcome.NOT_WAITING, "tchau"),
        id="every-chatwoot-event-refreshes-the-context",
    ),
]


@pytest.mark.parametrize(("session", "event", "expected"), SALES)
def test_step_buttons(session: Session | None, event: Input, expected: Step) -> None:
    """Each transition of a button flow gives the expected session, actions and outcome."""
    assert step(FLOW, session, event, NOW) == expected


# --- the flow language: input, set, save_to, conditions, webhooks, handoff, end, timers -------

VARS = {"origem": "whatsapp", "plano": "pro"}
ANSWERED = {**VARS, "email": "ana@exemplo.com"}
ADULT = {**ANSWERED, "idade": 30}
EMAIL_OPTIONS = (Option("Não tenho", "nao_tenho"), Option("Pular", "pular"))
EMAIL_QUESTION = "Oi Maria! Seu e-mail? (whatsapp)"
AGE_QUESTION = SendText("Quantos anos você tem?", "idade")
IN_AN_HOUR = NOW + timedelta(hours=1)
CALL = CallWebhook(
    url="https://crm.example/leads/ana%40exemplo.com?nome=Maria%20Silva",
    method="POST",
    headers={"Authorization": "Bearer s3cr3t", "X-Nome": "Maria Silva"},
    body={"email": "ana@exemplo.com", "idade": 30, "origem": "whatsapp"},
    timeout=10.0,
    retry=False,
    block="crm",
)


def form(block: str, **changes: Any) -> Session:
    """The form flow, active at `block`, its inactivity deadline an hour after NOW."""
    return session_of(FORM, block, **{"inactive_at": IN_AN_HOUR, **changes})


def asking_email(**changes: Any) -> Session:
    fields: dict[str, Any] = {
        "variables": VARS,
        "waiting": Waiting.INPUT,
        "timeout_at": NOW + timedelta(minutes=10),
        **changes,
    }
    return form("email", **fields)


def asking_age(**changes: Any) -> Session:
    fields: dict[str, Any] = {"variables": ANSWERED, "waiting": Waiting.INPUT, **changes}
    return form("idade", **fields)


def calling(**changes: Any) -> Session:
    fields: dict[str, Any] = {
        "variables": ADULT,
        "waiting": Waiting.WEBHOOK,
        "timeout_at": NOW + timedelta(minutes=2),
        **changes,
    }
    return form("crm", **fields)


def with_attribute(scope_name: str, key: str, value: Any) -> dict[str, Any]:
    part = {**CTX[scope_name], "custom_attributes": {**CTX[scope_name]["custom_attributes"]}}
    part["custom_attributes"][key] = value
    return {**CTX, scope_name: part}


def later(session: Session, **changes: Any) -> Session:
    """`session` after a customer message at LATER restarted its inactivity count."""
    moved = replace(session, inactive_at=LATER + timedelta(hours=1), **changes)
    return replace(moved, context={**moved.context, CUSTOMER_WROTE_AT: LATER.isoformat()})


FORM_CASES = [
    pytest.param(
        None,
        said("Oi"),
        NOW,
        Step(
            asking_email(),
            (SendOptions(EMAIL_QUESTION, EMAIL_OPTIONS, "email"),),
            Outcome.STARTED,
            None,
        ),
        id="set-runs-before-the-message-and-deadlines-are-set",
    ),
    pytest.param(
        asking_email(),
        said(" ana@Exemplo.com "),
        LATER,
        Step(
            later(
                asking_age(),
                context=with_attribute("contact", "email", "ana@exemplo.com"),
            ),
            (SaveAttribute("contact", "email", "ana@exemplo.com", "email"), AGE_QUESTION),
            Outcome.ANSWERED,
            "email",
        ),
        id="accepted-input-is-kept-saved-to-the-contact-and-the-flow-moves-on",
    ),
    pytest.param(
        asking_email(),
        said("ana@"),
        LATER,
        Step(
            later(asking_email(misses=1, timeout_at=LATER + timedelta(minutes=10))),
            (
                SendOptions(
                    f"{DEFAULT_ERRORS[InputType.EMAIL]}\n\n{EMAIL_QUESTION}",
                    EMAIL_OPTIONS,
                    "email",
                ),
            ),
            Outcome.MISSED,
            "email",
        ),
        id="bad-answer-gets-the-default-error-and-restarts-the-timers",
    ),
    pytest.param(
        asking_email(),
        said("2"),
        NOW,
        Step(
            asking_email(misses=1, inactive_at=IN_AN_HOUR),
            (
                SendOptions(
                    f"{DEFAULT_ERRORS[InputType.EMAIL]}\n\n{EMAIL_QUESTION}",
                    EMAIL_OPTIONS,
                    "email",
                ),
            ),
            Outcome.MISSED,
            "email",
        ),
        id="position-numbers-are-free-text-in-an-input-block",
    ),
    pytest.param(
        asking_email(),
        said("não tenho"),
        NOW,
        Step(
            asking_age(variables=VARS),
            (AGE_QUESTION,),
            Outcome.CHOSE,
            "email",
            "nao_tenho",
        ),
        id="a-button-title-wins-over-the-input",
    ),
    pytest.param(
        asking_email(),
        said("Pular"),
        NOW,
        Step(
            asking_age(variables=VARS),
            (AddLabels(("sem_email",), "email"), AGE_QUESTION),
            Outcome.CHOSE,
            "email",
            "pular",
        ),
        id="a-button-without-next-block-falls-to-the-block-next-block",
    ),
    pytest.param(
        asking_email(misses=1),
        said("nada"),
        NOW,
        Step(
            ended(FORM, "ajuda", Status.HANDED_OFF, variables=VARS),
            (SendText("Vou chamar alguém.", "ajuda"), Handoff("the flow hands off here", "ajuda")),
            Outcome.MISSED,
            "email",
        ),
        id="past-the-retries-the-fallback-block-takes-over",
    ),
    pytest.param(
        asking_age(),
        said("trinta"),
        NOW,
        Step(
            asking_age(misses=1),
            (SendText("Só números, Maria.\n\nQuantos anos você tem?", "idade"),),
            Outcome.MISSED,
            "idade",
        ),
        id="custom-error-message-is-a-template",
    ),
    pytest.param(
        asking_age(misses=2),
        said("x"),
        NOW,
        Step(
            ended(FORM, "ajuda", Status.HANDED_OFF, variables=ANSWERED),
            (
                SendText("Vou chamar alguém.", "ajuda"),
                PrivateNote("Dados coletados:\n- email: ana@exemplo.com", "ajuda"),
                Handoff("the flow hands off here", "ajuda"),
            ),
            Outcome.MISSED,
            "idade",
        ),
        id="retries-3-means-the-third-miss",
    ),
    pytest.param(
        asking_age(),
        said("30"),
        NOW,
        Step(
            calling(context=with_attribute("conversation", "idade", 30)),
            (SaveAttribute("conversation", "idade", 30, "idade"), CALL),
            Outcome.ANSWERED,
            "idade",
        ),
        id="a-true-condition-leads-to-a-webhook-that-waits",
    ),
    pytest.param(
        asking_age(),
        said("15"),
        NOW,
        Step(
            ended(
                FORM,
                "menor",
                Status.COMPLETED,
                variables={**ANSWERED, "idade": 15},
                context=with_attribute("conversation", "idade", 15),
            ),
            (
                SaveAttribute("conversation", "idade", 15, "idade"),
                SendText("Desculpe, só atendemos maiores de idade.", "menor"),
                Resolve("menor"),
            ),
            Outcome.ANSWERED,
            "idade",
        ),
        id="else-and-end-with-resolve",
    ),
    pytest.param(
        asking_age(variables={**ANSWERED, "plano": "free"}),
        said("1.500"),
        NOW,
        Step(
            ended(
                FORM,
                "menor",
                Status.COMPLETED,
                variables={**ANSWERED, "plano": "free", "idade": 1500},
                context=with_attribute("conversation", "idade", 1500),
            ),
            (
                SaveAttribute("conversation", "idade", 1500, "idade"),
                SendText("Desculpe, só atendemos maiores de idade.", "menor"),
                Resolve("menor"),
            ),
            Outcome.ANSWERED,
            "idade",
        ),
        id="a-false-condition-goes-to-else",
    ),
    pytest.param(
        calling(),
        WebhookReply("crm", True, 201, {"protocolo": "X1"}),
        NOW,
        Step(
            ended(
                FORM,
                "protocolo",
                Status.HANDED_OFF,
                variables={**ADULT, "crm": {"protocolo": "X1"}},
            ),
            (
                SendText("Seu protocolo é X1.", "protocolo"),
                Assign(3, 9, "protocolo"),
                PrivateNote(
                    "Lead de whatsapp\n\nDados coletados:\n- email: ana@exemplo.com\n- idade: 30",
                    "protocolo",
                ),
                Handoff("the flow hands off here", "protocolo"),
            ),
            Outcome.WEBHOOK_OK,
            "crm",
        ),
        id="webhook-answer-is-saved-then-handoff-assigns-and-notes",
    ),
    pytest.param(
        calling(),
        WebhookReply("crm", False, 500, "erro"),
        NOW,
        Step(
            ended(FORM, "falha", Status.COMPLETED, variables=ADULT),
            (SendText("Não consegui registrar agora.", "falha"),),
            Outcome.WEBHOOK_FAILED,
            "crm",
        ),
        id="webhook-error-goes-to-on-error",
    ),
    pytest.param(
        calling(),
        WebhookReply("outro", True, 200, {}),
        NOW,
        Step(calling(), (), Outcome.IGNORED, "outro"),
        id="webhook-reply-for-another-block-is-ignored",
    ),
    pytest.param(
        asking_email(),
        WebhookReply("email", True, 200, {}),
        NOW,
        Step(asking_email(), (), Outcome.IGNORED, "email"),
        id="webhook-reply-while-waiting-for-the-customer-is-ignored",
    ),
    pytest.param(
        ended(FORM, "crm", Status.HANDED_OFF),
        WebhookReply("crm", True, 200, {}),
        NOW,
        Step(ended(FORM, "crm", Status.HANDED_OFF), (), Outcome.IGNORED, "crm"),
        id="webhook-reply-for-a-finished-session-is-ignored",
    ),
    pytest.param(
        None,
        WebhookReply("crm", True, 200, {}),
        NOW,
        Step(None, (), Outcome.IGNORED, "crm"),
        id="webhook-reply-without-a-session-is-ignored",
    ),
    pytest.param(
        calling(),
        said("oi?"),
        LATER,
        Step(
            later(calling(timeout_at=LATER + timedelta(minutes=2))),
            (),
            Outcome.NOT_WAITING,
            "crm",
        ),
        id="a-message-during-the-webhook-only-restarts-the-timers",
    ),
    pytest.param(
        calling(),
        said("atendente"),
        NOW,
        Step(
            ended(FORM, "crm", Status.HANDED_OFF, variables=ADULT),
            (
                SendText(DEFAULT_HANDOFF_MESSAGE, "crm"),
                PrivateNote(
                    "Dados coletados:\n- email: ana@exemplo.com\n- idade: 30",
                    "crm",
                ),
                Handoff(ASKED_HUMAN, "crm"),
            ),
            Outcome.HANDOFF_WORD,
            "crm",
        ),
        id="a-handoff-word-leaves-the-agent-a-summary",
    ),
    pytest.param(
        asking_age(),
        said("menu"),
        LATER,
        Step(
            later(asking_email(timeout_at=LATER + timedelta(minutes=10))),
            (SendOptions(EMAIL_QUESTION, EMAIL_OPTIONS, "email"),),
            Outcome.RESTARTED,
            "idade",
        ),
        id="restart-clears-the-answers-and-runs-set-again",
    ),
    pytest.param(
        asking_email(),
        TimerFired("timeout", "email"),
        NOW + timedelta(minutes=10),
        Step(
            form("lembrete", variables=VARS, waiting=Waiting.BUTTONS),
            (SendOptions("Ainda está aí?", (Option("Sim", "sim"),), "lembrete"),),
            Outcome.TIMED_OUT,
            "email",
        ),
        id="a-block-timeout-goes-to-its-next-block",
    ),
    pytest.param(
        asking_email(),
        TimerFired("timeout", "email"),
        NOW + timedelta(minutes=9),
        Step(asking_email(), (), Outcome.IGNORED, "email"),
        id="a-timeout-not-yet-due-is-ignored",
    ),
    pytest.param(
        asking_email(),
        TimerFired("timeout", "crm"),
        NOW + timedelta(hours=2),
        Step(asking_email(), (), Outcome.IGNORED, "crm"),
        id="a-timeout-of-a-block-left-behind-is-ignored",
    ),
    pytest.param(
        asking_email(timeout_at=None),
        TimerFired("timeout", "email"),
        NOW + timedelta(hours=2),
        Step(asking_email(timeout_at=None), (), Outcome.IGNORED, "email"),
        id="a-timeout-without-a-deadline-is-ignored",
    ),
    pytest.param(
        calling(),
        TimerFired("timeout", "crm"),
        NOW + timedelta(minutes=2),
        Step(
            ended(FORM, "falha", Status.COMPLETED, variables=ADULT),
            (SendText("Não consegui registrar agora.", "falha"),),
            Outcome.TIMED_OUT,
            "crm",
        ),
        id="a-webhook-block-can-time-out-too",
    ),
    pytest.param(
        asking_email(),
        TimerFired("inactivity", "lembrete"),
        IN_AN_HOUR,
        Step(
            ended(FORM, "email", Status.ABANDONED, variables=VARS),
            (SendText("Encerrando, Maria.", "email"),),
            Outcome.ABANDONED,
            "email",
        ),
        id="inactivity-abandons-whatever-the-block",
    ),
    pytest.param(
        asking_email(),
        TimerFired("inactivity", "email"),
        IN_AN_HOUR - timedelta(seconds=1),
        Step(asking_email(), (), Outcome.IGNORED, "email"),
        id="inactivity-not-yet-due-is-ignored",
    ),
    pytest.param(
        asking_email(inactive_at=None),
        TimerFired("inactivity", "email"),
        IN_AN_HOUR,
        Step(asking_email(inactive_at=None), (), Outcome.IGNORED, "email"),
        id="inactivity-without-a-deadline-is-ignored",
    ),
    pytest.param(
        ended(FORM, "email", Status.COMPLETED),
        TimerFired("inactivity", "email"),
        IN_AN_HOUR,
        Step(ended(FORM, "email", Status.COMPLETED), (), Outcome.IGNORED, "email"),
        id="a-timer-of-a-finished-session-is-ignored",
    ),
]


@pytest.mark.parametrize(("session", "event", "now", "expected"), FORM_CASES)
def test_step_flow_language(
    session: Session | None, event: Input, now: datetime, expected: Step
) -> None:
    """Input, set, save_to, conditions, webhooks, handoff, end and timers, one row each."""
    assert step(FORM, session, event, now) == expected


def simple(block: str, **changes: Any) -> Session:
    return session_of(SIMPLE, block, **changes)


HOOK_FAILED = Outcome.WEBHOOK_FAILED

SIMPLE_CASES = [
    pytest.param(
        simple("cpf", waiting=Waiting.INPUT),
        said("529.982.247-25"),
        Step(
            ended(SIMPLE, "fim", Status.COMPLETED, variables={"cpf": "52998224725"}),
            (SendText("Obrigado", "fim"),),
            Outcome.ANSWERED,
            "cpf",
        ),
        id="input-without-save-to",
    ),
    pytest.param(
        simple("cpf", waiting=Waiting.INPUT, misses=1),
        said("123"),
        Step(
            ended(SIMPLE, "cpf", Status.HANDED_OFF, misses=2),
            (
                SendText(DEFAULT_HANDOFF_MESSAGE, "cpf"),
                Handoff("the answer was not accepted 2 times", "cpf"),
            ),
            Outcome.MISSED,
            "cpf",
        ),
        id="without-fallback-the-last-miss-hands-off",
    ),
    pytest.param(
        simple("hook", waiting=Waiting.WEBHOOK),
        WebhookReply("hook", True, 200, "ok"),
        Step(
            ended(SIMPLE, "fim", Status.COMPLETED),
            (SendText("Obrigado", "fim"),),
            Outcome.WEBHOOK_OK,
            "hook",
        ),
        id="webhook-without-save-as-keeps-nothing",
    ),
    pytest.param(
        simple("hook", waiting=Waiting.WEBHOOK),
        WebhookReply("hook", False, 503, None),
        Step(
            ended(SIMPLE, "hook", Status.HANDED_OFF),
            (
                SendText(DEFAULT_HANDOFF_MESSAGE, "hook"),
                Handoff("webhook failed: status 503", "hook"),
            ),
            HOOK_FAILED,
            "hook",
        ),
        id="webhook-error-without-on-error-hands-off",
    ),
    pytest.param(
        simple("hook", waiting=Waiting.WEBHOOK),
        WebhookReply("hook", False, None, None, "timed out after 10 s"),
        Step(
            ended(SIMPLE, "hook", Status.HANDED_OFF),
            (
                SendText(DEFAULT_HANDOFF_MESSAGE, "hook"),
                Handoff("webhook failed: timed out after 10 s", "hook"),
            ),
            HOOK_FAILED,
            "hook",
        ),
        id="webhook-error-names-the-error",
    ),
    pytest.param(
        simple("hook", waiting=Waiting.WEBHOOK),
        WebhookReply("hook", False, None, None),
        Step(
            ended(SIMPLE, "hook", Status.HANDED_OFF),
            (
                SendText(DEFAULT_HANDOFF_MESSAGE, "hook"),
                Handoff("webhook failed: no answer", "hook"),
            ),
            HOOK_FAILED,
            "hook",
        ),
        id="webhook-error-without-details",
    ),
    pytest.param(
        simple("gone", waiting=Waiting.WEBHOOK),
        WebhookReply("gone", True, 200, None),
        Step(
            ended(SIMPLE, "gone", Status.HANDED_OFF),
            (Handoff("block 'gone' no longer exists", "gone"),),
            Outcome.BLOCK_GONE,
            "gone",
        ),
        id="webhook-reply-at-a-block-gone",
    ),
    pytest.param(
        simple("fim", waiting=Waiting.WEBHOOK),
        WebhookReply("fim", True, 200, None),
        Step(simple("fim", waiting=Waiting.WEBHOOK), (), Outcome.IGNORED, "fim"),
        id="webhook-reply-at-a-block-without-webhook",
    ),
    pytest.param(
        simple("gone", timeout_at=NOW),
        TimerFired("timeout", "gone"),
        Step(
            ended(SIMPLE, "gone", Status.HANDED_OFF),
            (Handoff("block 'gone' no longer exists", "gone"),),
            Outcome.BLOCK_GONE,
            "gone",
        ),
        id="timeout-at-a-block-gone",
    ),
    pytest.param(
        simple("cpf", timeout_at=NOW),
        TimerFired("timeout", "cpf"),
        Step(simple("cpf", timeout_at=NOW), (), Outcome.IGNORED, "cpf"),
        id="timeout-at-a-block-without-timeout",
    ),
    pytest.param(
        simple("cpf", inactive_at=NOW),
        TimerFired("inactivity", "cpf"),
        Step(ended(SIMPLE, "cpf", Status.ABANDONED), (), Outcome.ABANDONED, "cpf"),
        id="inactivity-without-a-message-abandons-quietly",
    ),
]


@pytest.mark.parametrize(("session", "event", "expected"), SIMPLE_CASES)
def test_step_without_fallback_or_inactivity(
    session: Session, event: Input, expected: Step
) -> None:
    """Without a fallback the bot hands off; odd timers and replies are handled, never raised."""
    assert step(SIMPLE, session, event, NOW) == expected


def test_proactive_start_with_initial_data() -> None:
    """start() runs the first block with the initial data as variables and the given context."""
    result = start(FORM, NOW, variables={"pedido": "123"}, context=CTX)
    assert result == Step(
        asking_email(variables={"pedido": "123", **VARS}),
        (SendOptions(EMAIL_QUESTION, EMAIL_OPTIONS, "email"),),
        Outcome.STARTED,
        None,
    )


def test_proactive_start_without_context() -> None:
    """Without a contact, names render empty rather than fail."""
    result = start(FORM, NOW)
    assert result.session is not None
    assert result.session.variables == {"origem": "whatsapp", "plano": None}
    assert result.actions == (SendOptions("Oi ! Seu e-mail? (whatsapp)", EMAIL_OPTIONS, "email"),)


def test_scope_puts_the_contact_over_variables() -> None:
    """Templates see variables by name, and `contact`, `conversation` from the context; `nome`
    is a variable's when one is given (initialData wins), else the contact's name."""
    session = session_of(FORM, "email", variables={"x": 1, "nome": "Outra"})
    names = scope(session)
    assert (names["x"], names["nome"], names["contact"]["name"]) == (
        1,
        "Outra",
        "Maria Silva",
    )
    assert scope(replace(session, variables={"x": 1}))["nome"] == "Maria Silva"
    assert names["conversation"]["id"] == 1287
    assert scope(replace(session, context={"contact": "?"}))["contact"] == {}


def test_summary_lists_answered_inputs_in_flow_order() -> None:
    """The agent's note lists the flow's inputs that have a value, nothing else."""
    assert summary(FORM, {"idade": 30, "email": "a@b.co", "origem": "x"}) == (
        "Dados coletados:\n- email: a@b.co\n- idade: 30"
    )
    assert summary(FORM, {"email": None, "idade": 15}) == "Dados coletados:\n- idade: 15"
    assert summary(FORM, {"origem": "x"}) == ""


def test_a_question_without_message_repeats_only_the_hint() -> None:
    """An old stored version with buttons but no message still gets a hint."""
    blocks = {**FLOW.blocks, "inicio": replace(FLOW.blocks["inicio"], message=None)}
    result = step(replace(FLOW, blocks=blocks), at("inicio"), said("talvez"), NOW)
    assert result.actions == (SendOptions(DEFAULT_RETRY_MESSAGE, ASK.options, "inicio"),)


def test_runtime_cycle_hands_off() -> None:
    """An old stored version that loops without waiting hands off instead of spinning."""
    flow = parse_flow(
        "blocks:\n  a:\n    message: x\n    buttons: [{text: Sim, next_block: b}]\n"
        "  b:\n    message: y\n    next_block: a\n",
        "f.yaml",
    )
    looping = replace(
        flow, blocks={**flow.blocks, "a": replace(flow.blocks["a"], buttons=(), next_block="b")}
    )
    result = step(looping, None, said("oi"), NOW)
    assert result.session is not None
    assert result.session.status is Status.HANDED_OFF
    assert result.actions[-1] == Handoff("cannot enter block 'a'", "b")


def _flow(name: str, trigger: str) -> Flow:
    return parse_flow(
        f"name: {name}\ntrigger: {trigger}\nblocks:\n  a: {{message: oi}}\n", "f.yaml"
    )


CHOICES = [
    ("keyword wins over default", "Vendas", 7, "vendas"),
    ("keyword case and accents ignored", "SUPORTÉ", 7, "suporte"),
    ("default when no keyword", "oi", 7, "geral"),
    ("inbox-limited default wins in its inbox", "oi", 9, "so9"),
    ("inbox-limited keyword flow is not used elsewhere", "nove", 7, "geral"),
    ("inbox-limited keyword flow in its inbox", "nove", 9, "so9"),
]
FLOWS = [
    _flow("geral", "{default: true}"),
    _flow("vendas", "{keywords: [vendas]}"),
    _flow("suporte", "{keywords: [suporte]}"),
    _flow("so9", "{default: true, keywords: [nove], inboxes: [9]}"),
]


@pytest.mark.parametrize(
    ("text", "inbox", "name"), [c[1:] for c in CHOICES], ids=[c[0] for c in CHOICES]
)
def test_choose_flow(text: str, inbox: int, name: str) -> None:
    """A new conversation starts the keyword's flow, else the default for its inbox."""
    chosen = choose_flow(FLOWS, inbox, text)
    assert chosen is not None
    assert chosen.name == name


def test_choose_flow_none() -> None:
    """With no default flow and no keyword match there is nothing to start."""
    assert choose_flow([_flow("vendas", "{keywords: [vendas]}")], 7, "oi") is None


def _widget(name: str, trigger: str) -> Flow:
    return parse_flow(
        f"name: {name}\ntrigger: {trigger}\nblocks:\n  a: {{message: oi}}\n", "f.yaml"
    )


WIDGET_FLOWS = [
    _widget("geral", "{default: true}"),
    _widget("boas_vindas", "{widget: true}"),
    _widget("loja", "{widget: true, inboxes: [3]}"),
]


@pytest.mark.parametrize(
    ("inbox", "name"),
    [(3, "loja"), (5, "boas_vindas")],
    ids=["inbox-limited wins in its inbox", "unlimited elsewhere"],
)
def test_choose_widget_flow(inbox: int, name: str) -> None:
    """The widget greets with the inbox's widget flow, an inbox-limited one first."""
    chosen = choose_widget_flow(WIDGET_FLOWS, inbox)
    assert chosen is not None
    assert chosen.name == name


def test_choose_widget_flow_none() -> None:
    """No flow asks for the widget: nothing greets."""
    assert choose_widget_flow(WIDGET_FLOWS[:1], 3) is None


@pytest.mark.parametrize("text", ["፩", "1" * 5000, "0", "4"])
def test_odd_digits_are_no_position(text: str) -> None:
    """Only ASCII digits of a real position pick a button: not "፩", not 5,000 digits."""
    buttons = FLOW.blocks["inicio"].buttons
    assert match(buttons, [said(text).text]).button is None


@pytest.mark.parametrize(
    ("value", "part"),
    [("..", "%2E%2E"), (".", "%2E"), ("a/b", "a%2Fb"), ("v1.2", "v1.2"), ("", "")],
)
def test_url_variables_cannot_move_the_path(value: str, part: str) -> None:
    """A variable in a URL path is one segment: "..", "." and "/" are encoded."""
    from agentbot.engine import _url_part

    assert _url_part(value) == part
