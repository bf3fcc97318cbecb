"""A flow as a Mermaid flowchart (`agentbot graph`): its blocks as nodes, their exits as edges.

This module does no I/O: it turns a `Flow` into text; the CLI prints it. Paste the text into
a Markdown file (GitHub, GitLab and most editors draw ```mermaid blocks) or mermaid.live.

- Node ids are `b_` and the block id (other characters as `_`), so that no block id can
  collide with a Mermaid keyword such as `end`; the label is the block id and the start of its
  message. A block that hands off is drawn `[[…]]` (class `handoff`), one after which the flow
  ends (`end:`, or no way out) `([…])` (class `finish`); a `start` circle points at the start.
- Edges carry the exit's label (flows.exits): a button's text, a condition's `if`, `else`;
  `next_block` has none; a block timeout and a webhook's `on_error` are dotted. The flow's
  `fallback` is reached, dotted, from a `misses` node.
"""

from __future__ import annotations

import re
from datetime import timedelta

from agentbot.flows import Block, Flow, exits

INDENT = "    "
SNIPPET = 40  # characters of a block's message shown in its node
STYLES = (
    "classDef handoff fill:#fde2e1,stroke:#c0392b,color:#000",
    "classDef finish fill:#e3f4e1,stroke:#27ae60,color:#000",
    "classDef marker fill:#eeeeee,stroke:#999999,color:#000",
)
# Characters that would end a quoted label (`|` only an edge's), start an HTML tag or an entity
# code, written as Mermaid entity codes.
ESCAPES = {'"': "#34;", "|": "#124;", "<": "#60;", ">": "#62;", "#": "#35;"}
_ESCAPE = re.compile("|".join(re.escape(c) for c in ESCAPES))
_ESCAPE_NODE = re.compile("|".join(re.escape(c) for c in ESCAPES if c != "|"))


def mermaid(flow: Flow) -> str:
    """The flowchart's text, one statement per line, ending with a newline."""
    ids = _node_ids(flow)
    title = " ".join(flow.title.split())
    lines = ["flowchart TD", f"{INDENT}%% {flow.name}: {title}"]
    lines.append(f'{INDENT}start(("start"))')
    lines.append(f"{INDENT}start --> {ids[flow.start]}")
    if flow.inactivity is not None:
        after = duration(flow.inactivity.after)
        lines.append(f"{INDENT}%% inactivity: the session is abandoned after {after} in silence")
    for block in flow.blocks.values():
        lines.append(INDENT + _node(ids[block.id], block))
    for block in flow.blocks.values():
        # exits() lists buttons, then conditions, then split arms, then else/next/timeout/error:
        # a button titled "next" is still a button
        chosen = sum(1 for button in block.buttons if button.next_block is not None)
        labelled = chosen + len(block.conditions) + len(block.split)
        for i, (label, target) in enumerate(exits(block)):
            kind = "label" if i < labelled else label
            lines.append(INDENT + _edge(ids[block.id], ids[target], kind, label, block))
    if flow.fallback is not None:
        lines.append(f'{INDENT}misses{{{{"too many misses"}}}}')
        lines.append(f"{INDENT}misses -.-> {ids[flow.fallback]}")
    lines.extend(INDENT + style for style in STYLES)
    handoffs = [ids[b.id] for b in flow.blocks.values() if b.handoff is not None]
    finishes = [ids[b.id] for b in flow.blocks.values() if _ends(b)]
    markers = ["start", "misses"] if flow.fallback is not None else ["start"]
    for name, members in (("handoff", handoffs), ("finish", finishes), ("marker", markers)):
        if members:
            lines.append(f"{INDENT}class {','.join(members)} {name}")
    return "\n".join(lines) + "\n"


def duration(delta: timedelta) -> str:
    """30s, 10m, 1h30m, 1d: the way flow files write durations."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def escape(text: str, *, edge: bool = True) -> str:
    """Text safe inside a quoted Mermaid label: one line, no character that ends the label."""
    pattern = _ESCAPE if edge else _ESCAPE_NODE
    return pattern.sub(lambda match: ESCAPES[match.group()], " ".join(text.split()))


def _node_ids(flow: Flow) -> dict[str, str]:
    ids: dict[str, str] = {}
    used = {"start", "misses"}
    for block_id in flow.blocks:
        base = "b_" + re.sub(r"\W", "_", block_id, flags=re.ASCII)
        node, number = base, 1
        while node in used:
            number += 1
            node = f"{base}_{number}"
        used.add(node)
        ids[block_id] = node
    return ids


def _node(node: str, block: Block) -> str:
    label = escape(block.id, edge=False)
    if block.message is not None:
        text = " ".join(block.message.source.split())
        snippet = text if len(text) <= SNIPPET else text[: SNIPPET - 1].rstrip() + "…"
        label += f"<br/>{escape(snippet, edge=False)}"
    if block.handoff is not None:
        team = f" team {block.handoff.team_id}" if block.handoff.team_id is not None else ""
        return f'{node}[["{label}<br/>handoff{team}"]]'
    if block.end is not None:
        what = "end, resolve" if block.end.resolve else "end"
        return f'{node}(["{label}<br/>{what}"])'
    if _ends(block):
        return f'{node}(["{label}<br/>end"])'
    return f'{node}["{label}"]'


def _ends(block: Block) -> bool:
    """The flow ends after this block: `end:`, or no way out of it."""
    return block.end is not None or (block.handoff is None and not exits(block))


def _edge(source: str, target: str, kind: str, label: str, block: Block) -> str:
    if kind == "next":
        return f"{source} --> {target}"
    if kind == "timeout" and block.timeout is not None:
        return f'{source} -.->|"timeout {duration(block.timeout.after)}"| {target}'
    if kind == "error":
        return f'{source} -.->|"on_error"| {target}'
    return f'{source} -->|"{escape(label)}"| {target}'
