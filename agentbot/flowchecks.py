"""Checks on loaded flows: cycles of blocks that never wait for the customer, blocks no way
leads to, answers after which the flow ends without a reply, options of one question a typo
could confuse, variables read that nothing sets,
and clashes between the flows of a set (a name used twice, two default flows for the same
inboxes).

This module does no I/O: it is handed flows (or the blocks being loaded) and gives problems.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from agentbot.channels import WHATSAPP_BODY
from agentbot.expressions import paths_read
from agentbot.flows import OPEN_NOW, Block, Flow, exits, set_variables
from agentbot.matching import confusable
from agentbot.templates import Placeholder, Template
from agentbot.validation import Problem, line_at, suggest

# What templates and conditions see under `contact` and `conversation` (engine.snapshot).
CONTACT_FIELDS = ("id", "name", "phone_number", "email", "identifier", "custom_attributes")
CONVERSATION_FIELDS = (
    "id",
    "account_id",
    "inbox_id",
    "channel",
    "labels",
    "custom_attributes",
    "language",
)
BUILT_IN = {"nome": (), "contact": CONTACT_FIELDS, "conversation": CONVERSATION_FIELDS}


def flow_warnings(flow: Flow, file: str) -> list[Problem]:
    """What `agentbot check` warns about without refusing the flow: blocks that no way leads to
    from the start (or the fallback), answers after which the flow ends without a reply, a
    question whose own text is longer than WhatsApp's interactive body (it is cut there), and
    a `template:` without the `category` Chatwoot's API documents as required."""
    reached: set[str] = set()
    pending = [flow.start] if flow.fallback is None else [flow.start, flow.fallback]
    while pending:
        block_id = pending.pop()
        if block_id not in reached:
            reached.add(block_id)
            pending.extend(target for _, target in exits(flow.blocks[block_id]))
    problems: list[Problem] = []

    def warn(path: str, message: str) -> None:
        problems.append(Problem(file, line_at(flow.lines, path), path, message))

    if flow.template is not None and flow.template.category is None:
        warn(
            "template",
            "no category: Chatwoot's API documents template_params.category as required "
            "(UTILITY, MARKETING, ...); give the category the template was approved under",
        )

    for block_id, block in flow.blocks.items():
        path = f"blocks.{block_id}"
        if block_id not in reached:
            warn(path, "no way leads to this block from the start")
        if block.buttons and block.message is not None:
            size = _own_text(block.message)
            if size > WHATSAPP_BODY:
                warn(
                    f"{path}.message",
                    f"the question's own text is {size} characters: WhatsApp shows at most "
                    f"{WHATSAPP_BODY} with buttons, so it is cut there",
                )
        for i, text, j, other in confusable(block.buttons):
            warn(
                f"{path}.buttons[{j}]",
                f"{other!r} can be confused with {text!r} of buttons[{i}]: a reply with a typo"
                " could mean either, and is asked again",
            )
        if block.terminal or _routes(block):
            continue
        for i, button in enumerate(block.buttons):
            if button.next_block is None:
                warn(
                    f"{path}.buttons[{i}]",
                    "choosing this button ends the flow without a reply to the customer",
                )
        if block.input is not None or block.webhook is not None:
            warn(path, "the flow ends after this block's answer without a reply to the customer")
    return problems


def _own_text(message: Template) -> int:
    """How many characters of a message are the flow's own (placeholders left out)."""
    return sum(len(part) for part in message.parts if isinstance(part, str))


def check_flow_set(flows: Sequence[tuple[str, Flow]]) -> list[Problem]:
    """Problems between flows: a name used twice, two default flows for the same inboxes."""
    problems: list[Problem] = []
    owners: dict[str, str] = {}
    defaults: list[tuple[str, Flow]] = []
    for file, flow in flows:
        if flow.name in owners:
            message = f"flow name {flow.name!r} is already used by {owners[flow.name]}"
            problems.append(Problem(file, line_at(flow.lines, "name"), "name", message))
        else:
            owners[flow.name] = file
        if not flow.trigger.default:
            continue
        for other_file, other in defaults:
            scope = _shared_scope(flow.trigger.inboxes, other.trigger.inboxes)
            if scope is not None:
                line = line_at(flow.lines, "trigger.default")
                message = f"{other_file} is already the default flow for {scope}"
                problems.append(Problem(file, line, "trigger.default", message))
                break  # one clash is enough to tell the author what to fix
        defaults.append((file, flow))
    return problems


def _shared_scope(inboxes: tuple[int, ...], others: tuple[int, ...]) -> str | None:
    """The inboxes two default flows both claim, in words; None when they claim none in common.

    A default without `inboxes` covers every inbox, but one with `inboxes` is more specific and
    wins there, so only two unrestricted defaults, or two overlapping lists, clash.
    """
    if not inboxes and not others:
        return "every inbox"
    common = sorted(set(inboxes) & set(others))
    if not common:
        return None
    numbers = ", ".join(str(inbox) for inbox in common)
    return f"inbox {numbers}" if len(common) == 1 else f"inboxes {numbers}"


def _routes(block: Block) -> list[tuple[str, str]]:
    """(field, target) of each way out of a block once it is done, in the order they are tried."""
    routes = [(f"conditions[{i}].next_block", c.next_block) for i, c in enumerate(block.conditions)]
    routes += [(f"split[{i}].next_block", arm.next_block) for i, arm in enumerate(block.split)]
    if block.else_block is not None:
        routes.append(("else", block.else_block))
    if block.next_block is not None:
        routes.append(("next_block", block.next_block))
    return routes


def _passing_routes(blocks: Mapping[str, Block], block_id: str) -> list[tuple[str, str]]:
    """The routes taken at once, without waiting: those of a block that neither waits nor stops."""
    block = blocks.get(block_id)
    if block is None or block.waits or block.terminal:
        return []
    return _routes(block)


def loops(blocks: Mapping[str, Block]) -> list[tuple[str, str]]:
    """(path, message) of each cycle of blocks that never wait: entering it would run forever.

    Each cycle is reported once, at the route out of its first block in the file.
    """
    found: list[tuple[str, str]] = []
    order = {block_id: position for position, block_id in enumerate(blocks)}
    finished: set[str] = set()
    reported: set[str] = set()
    for root in blocks:
        if root in finished:
            continue
        trail = [root]  # the depth-first path, and where each block is on it
        on_trail = {root: 0}
        stack = [iter(_passing_routes(blocks, root))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                done = trail.pop()
                del on_trail[done]
                finished.add(done)
                continue
            target = following[1]
            if target in on_trail:
                loop = trail[on_trail[target] :]
                first = min(loop, key=order.__getitem__)
                if first not in reported:
                    reported.add(first)
                    after = loop[(loop.index(first) + 1) % len(loop)]
                    field_name = next(f for f, t in _routes(blocks[first]) if t == after)
                    message = f"loops back to {first!r} without waiting for the customer"
                    found.append((f"blocks.{first}.{field_name}", message))
            elif target not in finished:
                on_trail[target] = len(trail)
                trail.append(target)
                stack.append(iter(_passing_routes(blocks, target)))
    return found


def unknown_reads(flow: Flow) -> list[tuple[str, str]]:
    """(path, message) of every variable a template or condition reads that the flow never
    sets (input or webhook `save_as`, `set:`), that is not built in (`nome`, `contact.*`,
    `conversation.*`) and that `variables:` does not declare: most often a typo. `open_now`
    is the loader's to judge (it needs `hours:`)."""
    known = set(set_variables(flow)) | set(flow.variables) | {OPEN_NOW}
    names = sorted(known | set(BUILT_IN))
    found: list[tuple[str, str]] = []
    for path, parts in reads(flow):
        head = parts[0]
        if head in BUILT_IN:
            fields = BUILT_IN[head]
            if len(parts) > 1 and fields and parts[1] not in fields:
                hint = suggest(parts[1], fields)
                found.append((path, f"{head} has no field {parts[1]!r}{hint}"))
            continue
        if head not in known:
            message = (
                f"unknown variable {head!r}{suggest(head, names)}: no input, set or webhook of"
                " the flow saves it (declare a start's initial data under variables:)"
            )
            found.append((path, message))
    return found


def reads(flow: Flow) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(YAML path, variable path) of every variable read in the flow's templates and conditions."""
    for block_id, block in flow.blocks.items():
        at = f"blocks.{block_id}"
        yield from _template_reads(block.message, f"{at}.message")
        if block.input is not None:
            yield from _template_reads(block.input.error_message, f"{at}.input.error_message")
        if block.handoff is not None:
            yield from _template_reads(block.handoff.note, f"{at}.handoff.note")
        for name, value in block.assign.items():
            yield from _tree_reads(value, f"{at}.set.{name}")
        for i, condition in enumerate(block.conditions):
            yield from ((f"{at}.conditions[{i}].if", p) for p in paths_read(condition.test))
        if block.webhook is not None:
            spec = block.webhook
            yield from _template_reads(spec.url, f"{at}.webhook.url")
            for name, header in spec.headers.items():
                yield from _template_reads(header, f"{at}.webhook.headers.{name}")
            yield from _tree_reads(spec.body, f"{at}.webhook.body")
    if flow.inactivity is not None:
        yield from _template_reads(flow.inactivity.message, "inactivity.message")
    if flow.template is not None:
        yield from _tree_reads(flow.template.params, "template.params")


def _template_reads(template: Template | None, path: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    if template is not None:
        for part in template.parts:
            if isinstance(part, Placeholder):
                yield path, part.path


def _tree_reads(tree: Any, path: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    if isinstance(tree, Template):
        yield from _template_reads(tree, path)
    elif isinstance(tree, Mapping):
        for key, item in tree.items():
            yield from _tree_reads(item, f"{path}.{key}")
    elif isinstance(tree, tuple):
        for i, item in enumerate(tree):
            yield from _tree_reads(item, f"{path}[{i}]")
