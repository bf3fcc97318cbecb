"""`hours:` with `open_now`, `split:` blocks and `debounce:`: loading, and the engine with the
clock and the conversation pinned (bursts end to end: test_flow_features.py)."""

from __future__ import annotations

import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentbot.catalog import load_flow_files, read_shared_hours
from agentbot.engine import (
    Outcome,
    SendText,
    Session,
    Status,
    burst_answer,
    burst_opening,
    start,
    step,
)
from agentbot.errors import FlowError
from agentbot.events import Contact, Conversation, CustomerMessage
from agentbot.flows import Arm, exits
from agentbot.graph import mermaid
from agentbot.loader import flow_from_definition, parse_flow

FILE = "flows/teste.yaml"

HOURS_FLOW = """
name: atendimento
hours:
  tz: America/Sao_Paulo
  mon-fri: "08:00-18:00"
  sat: "08:00-12:00"
  holidays: [2026-12-25]
blocks:
  inicio:
    conditions:
      - {if: open_now, next_block: aberto}
    else: fechado
  aberto:
    message: Estamos online!
  fechado:
    message: Estamos fora do horário.
"""

SPLIT_FLOW = """
name: campanha
blocks:
  teste_ab:
    split:
      - {weight: 50, next_block: curta, name: a}
      - {weight: 50, next_block: longa, name: b}
  curta:
    message: "Oferta: 10% hoje. Arm {{teste_ab}}."
  longa:
    message: "Temos uma oferta especial para você hoje. Arm {{teste_ab}}."
"""


def yml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def problems_of(text: str, **kw: object) -> list[str]:
    with pytest.raises(FlowError) as info:
        parse_flow(yml(text), FILE, **kw)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


def message(conversation_id: int, account_id: int = 1) -> CustomerMessage:
    conversation = Conversation(
        account_id=account_id, id=conversation_id, inbox_id=1, status="pending"
    )
    return CustomerMessage(conversation, Contact(id=9, name="Ana"), conversation_id, "oi")


SAO_PAULO_08H = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)  # a Tuesday, 08:00 in São Paulo


@pytest.mark.parametrize(
    ("now", "reply"),
    [
        (SAO_PAULO_08H, "Estamos online!"),
        (SAO_PAULO_08H - timedelta(minutes=1), "Estamos fora do horário."),
        (datetime(2026, 12, 1, 21, 0, tzinfo=UTC), "Estamos fora do horário."),  # 18:00
        (datetime(2026, 12, 5, 14, 59, tzinfo=UTC), "Estamos online!"),  # Saturday 11:59
        (datetime(2026, 12, 5, 15, 0, tzinfo=UTC), "Estamos fora do horário."),  # Sat 12:00
        (datetime(2026, 12, 6, 14, 0, tzinfo=UTC), "Estamos fora do horário."),  # Sunday
        (datetime(2026, 12, 25, 14, 0, tzinfo=UTC), "Estamos fora do horário."),  # Christmas
    ],
)
def test_open_now_follows_the_clock(now: datetime, reply: str) -> None:
    """`if: open_now` takes the open branch exactly inside the hours, judged at the step's now."""
    flow = parse_flow(yml(HOURS_FLOW), FILE)
    result = step(flow, None, message(1), now)
    assert result.actions == (SendText(reply, result.session.block if result.session else ""),)


def test_not_open_now_and_a_proactive_start() -> None:
    """`not open_now` works like any expression, and a proactive start is judged at its now."""
    text = (
        HOURS_FLOW.replace("if: open_now", "if: not open_now")
        .replace("next_block: aberto", "next_block: fechado")
        .replace("else: fechado", "else: aberto")
    )
    flow = parse_flow(yml(text), FILE)
    assert start(flow, SAO_PAULO_08H).actions == (SendText("Estamos online!", "aberto"),)
    closed = start(flow, SAO_PAULO_08H - timedelta(hours=1))
    assert closed.actions == (SendText("Estamos fora do horário.", "fechado"),)


def test_hours_are_stored_as_json_and_load_back() -> None:
    """The stored definition carries the hours with dates as text; it builds the same flow."""
    flow = parse_flow(yml(HOURS_FLOW), FILE)
    assert flow.definition["hours"]["holidays"] == ["2026-12-25"]
    again = flow_from_definition(flow.definition, name="atendimento")
    assert again.hours == flow.hours
    assert again.version == flow.version


def test_shared_hours_by_name(tmp_path: Path) -> None:
    """`hours: office` takes FLOWS_DIR/hours/office.yaml; the version follows the shared file."""
    (tmp_path / "hours").mkdir()
    office = tmp_path / "hours" / "office.yaml"
    office.write_text("tz: America/Sao_Paulo\nmon-fri: 08:00-18:00\n")
    inline = yml(HOURS_FLOW).split("blocks:")[1]
    (tmp_path / "atendimento.yaml").write_text("hours: office\nblocks:" + inline)
    [(_, flow)] = load_flow_files([tmp_path])
    assert flow.definition["hours"] == {"tz": "America/Sao_Paulo", "mon-fri": "08:00-18:00"}
    assert step(flow, None, message(1), SAO_PAULO_08H).actions[0] == SendText(
        "Estamos online!", "aberto"
    )
    office.write_text("tz: America/Sao_Paulo\nmon-fri: 09:00-18:00\n")
    [(_, changed)] = load_flow_files([tmp_path])
    assert changed.version != flow.version
    assert step(changed, None, message(1), SAO_PAULO_08H).actions[0] == SendText(
        "Estamos fora do horário.", "fechado"
    )


def test_shared_hours_problems(tmp_path: Path) -> None:
    """A bad shared file is reported at its own line; a flow naming unknown hours says so."""
    (tmp_path / "hours").mkdir()
    (tmp_path / "hours" / "office.yaml").write_text("tz: America/Sao_Paulo\nmon-fry: 08:00-18:00\n")
    (tmp_path / "hours" / "broken.yaml").write_text("tz: [\n")
    (tmp_path / "hours" / "notes.txt").write_text("not hours")
    shared, problems = read_shared_hours(tmp_path)
    assert shared == {}
    assert [p.path for p in problems] == ["(yaml)", "mon-fry"]
    assert str(problems[1]).startswith(f"{tmp_path}/hours/office.yaml:2: mon-fry: 'mon-fry'")
    (tmp_path / "f.yaml").write_text("hours: office\nblocks: {a: {message: oi}}\n")
    with pytest.raises(FlowError) as info:
        load_flow_files([tmp_path])
    assert str(info.value.problems[-1]) == (
        f"{tmp_path}/f.yaml:1: hours: no shared hours named 'office' (known: none): create "
        "FLOWS_DIR/hours/office.yaml or write the hours here"
    )
    assert read_shared_hours(tmp_path / "nowhere") == ({}, [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "hours: {tz: Mars/Olympus, mon: 08:00-18:00}\nblocks: {a: {message: oi}}\n",
            [
                "1: hours.tz: hours: 'Mars/Olympus' is not a known time zone: use e.g. "
                "America/Sao_Paulo"
            ],
        ),
        (
            "hours: [mon]\nblocks: {a: {message: oi}}\n",
            [
                "1: hours: hours: expected a mapping like {tz: America/Sao_Paulo, mon-fri: "
                "08:00-18:00}"
            ],
        ),
        (
            """
            blocks:
              a:
                conditions: [{if: "open_now and x", next_block: b}]
                else: b
              b: {message: oi}
            """,
            [
                "3: blocks.a.conditions[0].if: open_now needs business hours: add hours: at the "
                "top of the flow"
            ],
        ),
        (
            """
            blocks:
              a:
                input: {save_as: open_now}
                message: Oi
            """,
            ["3: blocks.a.input.save_as: 'open_now' is a reserved name: choose another"],
        ),
        (
            "debounce: 2 minutes\nblocks: {a: {message: oi}}\n",
            [
                "1: debounce: expected a duration like 30s, 10m, 2h or 1d, got the string "
                "'2 minutes'"
            ],
        ),
        (
            "debounce: 2m\nblocks: {a: {message: oi}}\n",
            ["1: debounce: a debounce longer than 60s keeps the customer waiting: shorten it"],
        ),
    ],
    ids=[
        "bad-zone",
        "hours-not-a-mapping",
        "open-now-without-hours",
        "open-now-reserved",
        "bad-debounce",
        "long-debounce",
    ],
)
def test_hours_and_debounce_problems(text: str, expected: list[str]) -> None:
    """Each mistake in hours, open_now or debounce is named at its line with the fix."""
    assert problems_of(text) == [f"{FILE}:{line}" for line in expected]


def test_debounce_loads() -> None:
    """`debounce: 2s` is a window of two seconds; without it, None."""
    flow = parse_flow("debounce: 2s\nblocks: {a: {message: oi}}\n", FILE)
    assert flow.debounce == timedelta(seconds=2)
    assert parse_flow("blocks: {a: {message: oi}}\n", FILE).debounce is None


def test_split_loads_with_names_and_exits() -> None:
    """Arms keep weight, target and name (default: the target); graphs and exits list them."""
    text = SPLIT_FLOW.replace(", name: b", "")
    flow = parse_flow(yml(text), FILE)
    assert flow.blocks["teste_ab"].split == (Arm(50, "curta", "a"), Arm(50, "longa", "longa"))
    assert exits(flow.blocks["teste_ab"]) == (("a", "curta"), ("longa", "longa"))
    assert 'b_teste_ab -->|"a"| b_curta' in mermaid(flow)


def test_split_is_deterministic_and_follows_weights() -> None:
    """One conversation always takes the same arm; over many, arms share by weight (50/50)."""
    flow = parse_flow(yml(SPLIT_FLOW), FILE)
    now = SAO_PAULO_08H
    first = step(flow, None, message(1287), now)
    assert all(step(flow, None, message(1287), now) == first for _ in range(5))
    arms = Counter(step(flow, None, message(c), now).splits[0][1] for c in range(1, 2001))
    assert set(arms) == {"a", "b"}
    assert abs(arms["a"] - 1000) < 80


def test_split_is_recorded_on_the_session_and_the_step() -> None:
    """The arm's name is the variable named after the block, in Step.splits, and in templates."""
    flow = parse_flow(yml(SPLIT_FLOW), FILE)
    for conversation in range(1, 40):
        result = step(flow, None, message(conversation), SAO_PAULO_08H)
        assert result.session is not None
        arm = result.session.variables["teste_ab"]
        assert result.splits == (("teste_ab", arm),)
        expected = "curta" if arm == "a" else "longa"
        assert result.session.block == expected
        assert result.session.status is Status.COMPLETED
        assert str(result.actions[0]).count(f"Arm {arm}.") == 1


def test_split_depends_on_account_and_conversation() -> None:
    """The same conversation id in another account may take another arm: both are in the key."""
    flow = parse_flow(yml(SPLIT_FLOW), FILE)
    arms = {
        step(flow, None, message(7, account_id=a), SAO_PAULO_08H).splits[0][1] for a in range(1, 40)
    }
    assert arms == {"a", "b"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """
            blocks:
              a:
                split: [{weight: 1, next_block: b}]
              b: {message: oi}
            """,
            ["3: blocks.a.split: a split needs at least two arms"],
        ),
        (
            """
            blocks:
              a:
                split: {weight: 1, next_block: b}
              b: {message: oi}
            """,
            ["3: blocks.a.split: expected a list of arms ({weight, next_block}), got a mapping"],
        ),
        (
            """
            blocks:
              a:
                split:
                  - {weight: 0, next_block: b}
                  - {weight: "50%", next_block: c}
                  - {weight: 1}
                  - {weight: 1, next_block: x}
                  - oops
              b: {message: oi}
              c: {message: oi}
            """,
            [
                "4: blocks.a.split[0].weight: expected a whole number of 1 or more (the arm's "
                "share), got the number 0",
                "5: blocks.a.split[1].weight: expected a whole number of 1 or more (the arm's "
                "share), got the string '50%'",
                "6: blocks.a.split[2].next_block: next_block is missing",
                "7: blocks.a.split[3].next_block: unknown block 'x'",
                "8: blocks.a.split[4]: expected a mapping with weight, next_block, name, got "
                "the string 'oops'",
            ],
        ),
        (
            """
            blocks:
              a:
                split:
                  - {weight: 1, next_block: b, name: x}
                  - {weight: 1, next_block: c, name: x}
              b: {message: oi}
              c: {message: oi}
            """,
            ["5: blocks.a.split[1].name: arm 'x' is named twice: give each arm a name"],
        ),
        (
            """
            blocks:
              a:
                message: Oi
                buttons: [{text: Sim}]
                next_block: b
                split:
                  - {weight: 1, next_block: b}
                  - {weight: 1, next_block: c}
              b: {message: oi}
              c: {message: oi}
            """,
            [
                "4: blocks.a.buttons: a split block goes on at once to the arm it picks: move "
                "buttons to a block of its own",
                "5: blocks.a.next_block: a split block goes on at once to the arm it picks: "
                "move next_block to a block of its own",
            ],
        ),
        (
            """
            blocks:
              a:
                handoff: true
                split:
                  - {weight: 1, next_block: b}
                  - {weight: 1, next_block: b, name: other}
              b: {message: oi}
            """,
            ["4: blocks.a.split: split is never used: the block hands off"],
        ),
        (
            """
            blocks:
              a:
                split:
                  - {weight: 1, next_block: b}
                  - {weight: 1, next_block: a, name: again}
              b: {message: oi}
            """,
            ["5: blocks.a.split[1].next_block: loops back to 'a' without waiting for the customer"],
        ),
    ],
    ids=["one-arm", "not-a-list", "bad-arms", "same-name", "split-with-routes", "terminal", "loop"],
)
def test_split_problems(text: str, expected: list[str]) -> None:
    """Each mistake in a split block is named at its line with the fix."""
    assert problems_of(text) == [f"{FILE}:{line}" for line in expected]


@pytest.mark.parametrize(
    "test",
    [
        "not open_now",
        "exists(open_now)",
        "x in [1, open_now]",
        "x == 1 or open_now",
        "[1, 2] contains x or open_now",
        "(open_now)",
    ],
)
def test_open_now_is_found_anywhere_in_a_condition(test: str) -> None:
    """Wherever a condition reads open_now, a flow without hours is told to add them."""
    text = f"""
    blocks:
      a:
        conditions: [{{if: "{test}", next_block: b}}]
      b: {{message: oi}}
    """
    assert problems_of(text) == [
        f"{FILE}:3: blocks.a.conditions[0].if: open_now needs business hours: add hours: at "
        "the top of the flow"
    ]


BUTTONS_FLOW = """
name: vendas
trigger: {default: true, keywords: [vendas]}
debounce: 2s
blocks:
  inicio:
    message: Já é cliente?
    buttons:
      - {text: Sim, next_block: fim}
      - {text: Não, value: nao, next_block: fim}
  fim:
    message: Obrigado!
"""
SUPPORT_FLOW = """
name: suporte
trigger: {keywords: [suporte]}
blocks:
  a: {message: Suporte aqui.}
"""


def said(text: str, message_id: int = 1) -> CustomerMessage:
    conversation = Conversation(account_id=1, id=5, inbox_id=1, status="pending")
    return CustomerMessage(conversation, Contact(id=9, name="Ana"), message_id, text)


def waiting_at_question() -> Session:
    flow = parse_flow(yml(BUTTONS_FLOW), FILE)
    session = step(flow, None, said("oi"), SAO_PAULO_08H).session
    assert session is not None
    return session


@pytest.mark.parametrize(
    ("texts", "answer"),
    [
        (["hmm", "Sim", "ok?"], "Sim"),  # the one the question takes
        (["Sim", "não", "talvez"], "não"),  # the last one it takes: the customer changed mind
        (["2"], "2"),  # a position number alone
        (["abc", "def"], "abc\ndef"),  # none: one message, so one miss
        (["oi", "atendente"], "atendente"),  # a global word counts
    ],
)
def test_burst_answer_at_a_question(texts: list[str], answer: str) -> None:
    """A burst at a question is answered as the last message the flow takes, else all in one."""
    flow = parse_flow(yml(BUTTONS_FLOW), FILE)
    burst = [said(text, i) for i, text in enumerate(texts, start=10)]
    event = burst_answer(flow, waiting_at_question(), burst, SAO_PAULO_08H)
    assert isinstance(event, CustomerMessage)
    assert event.text == answer
    last = burst[texts.index(answer)] if answer in texts else burst[-1]
    assert event.message_id == last.message_id


def test_burst_answer_of_all_misses_is_one_miss() -> None:
    """Stepping the merged burst gives one retry message and one miss."""
    flow = parse_flow(yml(BUTTONS_FLOW), FILE)
    session = waiting_at_question()
    event = burst_answer(flow, session, [said("x", 2), said("y", 3), said("z", 4)], SAO_PAULO_08H)
    result = step(flow, session, event, SAO_PAULO_08H)
    assert result.outcome is Outcome.MISSED
    assert len(result.actions) == 1
    assert result.session is not None
    assert result.session.misses == 1


@pytest.mark.parametrize(
    ("texts", "opening"),
    [
        (["Oi", "suporte", "rápido"], "suporte"),  # a later message names a flow's keyword
        (["vendas", "suporte"], "vendas"),  # the first keyword wins
        (["Oi", "tudo bem?"], "Oi"),  # no keyword: the first message, as without debounce
    ],
)
def test_burst_opening(texts: list[str], opening: str) -> None:
    """A burst that opens a conversation starts the flow its first keyword names."""
    flows = [parse_flow(yml(BUTTONS_FLOW), FILE), parse_flow(yml(SUPPORT_FLOW), "s.yaml")]
    burst = [said(text, i) for i, text in enumerate(texts, start=1)]
    event = burst_opening(flows, 1, burst)
    assert isinstance(event, CustomerMessage)
    assert event.text == opening
