"""`agentbot graph`: the Mermaid flowchart, read back by a small parser of its statements."""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from agentbot.flows import Flow, exits
from agentbot.graph import ESCAPES, duration, mermaid
from agentbot.loader import parse_flow

FLOWS = Path(__file__).resolve().parent.parent / "flows"

NODE = re.compile(r'(\w+)(\(\(|\(\[|\[\[|\{\{|\[)"([^"]*)"(\)\)|\]\)|\]\]|\}\}|\])')
EDGE = re.compile(r'(\w+) (-->|-\.->)(?:\|"([^"]*)"\|)? (\w+)')
CLASS = re.compile(r"class ([\w,]+) (\w+)")
SHAPES = {"((": "))", "([": "])", "[[": "]]", "{{": "}}", "[": "]"}


@dataclass
class Chart:
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (shape, label)
    edges: list[tuple[str, str, str | None, bool]] = field(default_factory=list)  # dotted?
    classes: dict[str, set[str]] = field(default_factory=dict)


def unescape(text: str) -> str:
    for char, code in ESCAPES.items():
        text = text.replace(code, char)
    return text


def parse_chart(text: str) -> Chart:
    """Every statement of the chart, or an assertion naming the line it cannot read."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    chart = Chart()
    for line in (line.strip() for line in lines[1:]):
        if line.startswith(("%%", "classDef ")):
            continue
        if (match := CLASS.fullmatch(line)) is not None:
            chart.classes[match[2]] = set(match[1].split(","))
        elif (match := EDGE.fullmatch(line)) is not None:
            label = unescape(match[3]) if match[3] is not None else None
            chart.edges.append((match[1], match[4], label, match[2] == "-.->"))
        elif (match := NODE.fullmatch(line)) is not None:
            assert SHAPES[match[2]] == match[4], line
            assert match[1] not in chart.nodes, f"node declared twice: {line}"
            chart.nodes[match[1]] = (match[2], match[3])
        else:
            raise AssertionError(f"cannot read: {line}")
    for source, target, _, _ in chart.edges:
        assert source in chart.nodes, source
        assert target in chart.nodes, target
    for members in chart.classes.values():
        assert members <= set(chart.nodes), members
    return chart


TRICKY = parse_flow(
    textwrap.dedent(
        """
        name: truques
        title: 'Truques "difíceis"'
        variables: [idade, plano]
        fallback: end
        blocks:
          passo-2:
            message: 'Diga "oi" <b>|</b> # {{nome}}'
            buttons:
              - {text: 'A|B "c"', next_block: passo_2}
              - {text: next, next_block: end}
              - {text: sem destino}
            conditions:
              - {if: 'idade >= 18 and plano == "pro"', next_block: end}
            else: passo_2
            timeout: {after: 90m, next_block: end}
          passo_2:
            webhook: {url: "https://x.example/a", on_error: end}
            next_block: end
          end:
            message: Fim
            handoff: {team_id: 4}
          acabou:
            message: Acabou
            end: true
        """
    ),
    "truques.yaml",
)


def load(name: str) -> Flow:
    path = FLOWS / f"{name}.yaml"
    return parse_flow(path.read_text(encoding="utf-8"), str(path))


@pytest.mark.parametrize(
    "flow",
    [load("fluxo_comercial"), load("suporte"), TRICKY],
    ids=["comercial", "suporte", "tricky"],
)
def test_graph_has_every_block_and_every_exit(flow: Flow) -> None:
    """Each block is a node labelled with its id, each exit an edge with its label, between
    declared nodes; handoff and end blocks carry their class; the start is pointed at."""
    chart = parse_chart(mermaid(flow))
    by_label = {unescape(label.split("<br/>")[0]): node for node, (_, label) in chart.nodes.items()}
    assert set(by_label) >= set(flow.blocks)
    ids = {block_id: by_label[block_id] for block_id in flow.blocks}
    assert ("start", ids[flow.start], None, False) in chart.edges
    expected = Counter(
        (ids[block.id], ids[target]) for block in flow.blocks.values() for _, target in exits(block)
    )
    drawn = Counter((s, t) for s, t, _, _ in chart.edges if s not in ("start", "misses"))
    assert drawn == expected
    handoffs = {ids[b.id] for b in flow.blocks.values() if b.handoff is not None}
    assert chart.classes.get("handoff", set()) == handoffs
    assert {ids[b.id] for b in flow.blocks.values() if b.end is not None} <= chart.classes.get(
        "finish", set()
    )
    for node in handoffs:
        assert chart.nodes[node][0] == "[["


def test_labels_and_shapes_of_a_tricky_flow() -> None:
    """Quotes, pipes and angle brackets are escaped; a block named `end` or ids that collide
    once cleaned get their own nodes; timeouts, on_error and the fallback are dotted."""
    chart = parse_chart(mermaid(TRICKY))
    assert chart.nodes["b_passo_2"] == (
        "[",
        "passo-2<br/>Diga #34;oi#34; #60;b#62;|#60;/b#62; #35; {{nome}}",
    )
    assert chart.nodes["b_passo_2_2"] == ("[", "passo_2")
    assert chart.nodes["b_end"] == ("[[", "end<br/>Fim<br/>handoff team 4")
    assert chart.nodes["b_acabou"] == ("([", "acabou<br/>Acabou<br/>end")
    assert chart.edges == [
        ("start", "b_passo_2", None, False),
        ("b_passo_2", "b_passo_2_2", 'A|B "c"', False),
        ("b_passo_2", "b_end", "next", False),
        ("b_passo_2", "b_end", 'idade >= 18 and plano == "pro"', False),
        ("b_passo_2", "b_passo_2_2", "else", False),
        ("b_passo_2", "b_end", "timeout 1h30m", True),
        ("b_passo_2_2", "b_end", None, False),
        ("b_passo_2_2", "b_end", "on_error", True),
        ("misses", "b_end", None, True),
    ]
    assert chart.classes == {
        "handoff": {"b_end"},
        "finish": {"b_acabou"},
        "marker": {"start", "misses"},
    }


def test_comercial_graph_reads_as_expected() -> None:
    """The example flow's chart, its first statements as an author sees them."""
    lines = mermaid(load("fluxo_comercial")).splitlines()
    assert lines[:5] == [
        "flowchart TD",
        "    %% fluxo_comercial: Fluxo Comercial",
        '    start(("start"))',
        "    start --> b_boas_vindas",
        '    b_boas_vindas["boas_vindas<br/>Olá {{nome}}! Sou o assistente comercia…"]',
    ]
    assert '    b_boas_vindas -->|"Não"| b_sem_interesse' in lines
    assert (
        '    b_sem_interesse(["sem_interesse<br/>Tudo bem, {{nome}}! Se mudar de ideia,…<br/>end"])'
        in lines
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30, "30s"), (600, "10m"), (5400, "1h30m"), (86400, "1d"), (90061, "1d1h1m1s"), (0, "0s")],
    ids=["seconds", "minutes", "sum", "day", "all-units", "zero"],
)
def test_duration(seconds: int, text: str) -> None:
    """Durations read as flow files write them."""
    assert duration(timedelta(seconds=seconds)) == text
