"""One Chatwoot event, one transaction: dedupe, lock the conversation, step, save, queue.

Nothing here talks to Chatwoot: the actions go to the outbox in the same transaction as the new
session state, so the webhook can answer as soon as they are committed and a crash after that
loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import structlog

from agentbot import engine
from agentbot.catalog import Catalog
from agentbot.engine import AddLabels, Handoff, SendOptions, SendText, Session, Status
from agentbot.events import CustomerMessage, Event, OptionSubmitted
from agentbot.flows import Flow
from agentbot.outbox import encode
from agentbot.store import NewSession, SessionRow, Store, Tx

log = structlog.get_logger("agentbot.service")


class Result(StrEnum):
    ACTED = "acted"
    DUPLICATE = "duplicate"
    NO_FLOW = "no_flow"
    QUIET = "quiet"


@dataclass(frozen=True, slots=True)
class Handled:
    result: Result
    actions: int = 0
    flow: str | None = None


class Service:
    def __init__(
        self, store: Store, catalog: Catalog, *, on_commit: Callable[[], None] = lambda: None
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.on_commit = on_commit

    async def handle(
        self, event: Event, *, event_name: str, delivery_id: str | None, now: datetime
    ) -> Handled:
        conv = event.conversation
        async with self.store.transaction() as tx:
            fresh = await tx.record_event(
                delivery_id=delivery_id,
                dedupe_key=event.dedupe_key,
                event=event_name,
                account_id=conv.account_id,
                conversation_id=conv.id,
            )
            if not fresh:
                return Handled(Result.DUPLICATE)
            await tx.lock_conversation(conv.account_id, conv.id)
            row = await tx.latest_session(conv.account_id, conv.id)
            handled = await self._step(tx, row, event, now)
        if handled.actions:
            self.on_commit()
        return handled

    async def _step(self, tx: Tx, row: SessionRow | None, event: Event, now: datetime) -> Handled:
        conv = event.conversation
        session: Session | None = None
        flow: Flow | None = None
        if row is not None and row.status in (Status.ACTIVE, Status.HANDED_OFF):
            if row.status == Status.HANDED_OFF:
                # Humans hold this conversation (or will as soon as the handoff is delivered).
                return Handled(Result.QUIET, flow=row.flow_name)
            session = _session(row)
            flow = await self.catalog.version(row.flow_name, row.flow_version)
            if flow is None:
                log.error(
                    "session.flow_gone",
                    flow=row.flow_name,
                    version=row.flow_version,
                    conversation_id=conv.id,
                )
                return await self._save(
                    tx,
                    row,
                    event,
                    engine.Step(
                        Session(
                            row.flow_name, row.flow_version, row.current_block, Status.HANDED_OFF
                        ),
                        (Handoff(f"flow version {row.flow_version} is gone", row.current_block),),
                        engine.Outcome.BLOCK_GONE,
                        row.current_block,
                    ),
                )
        if flow is None:
            flow = engine.choose_flow(
                list(self.catalog.current.values()), conv.inbox_id, _said(event)
            )
            if flow is None:
                log.warning("session.no_flow", inbox_id=conv.inbox_id, conversation_id=conv.id)
                return Handled(Result.NO_FLOW)
            row = None
        result = engine.step(flow, session, event, now)
        if result.outcome is engine.Outcome.BLOCK_GONE:
            log.error(
                "session.block_gone",
                flow=flow.name,
                version=flow.version,
                block=result.block,
                conversation_id=conv.id,
            )
        return await self._save(tx, row, event, result)

    async def _save(
        self, tx: Tx, row: SessionRow | None, event: Event, result: engine.Step
    ) -> Handled:
        conv = event.conversation
        new = result.session
        assert new is not None
        if row is None:
            session_id = await tx.insert_session(
                NewSession(
                    account_id=conv.account_id,
                    conversation_id=conv.id,
                    contact_id=event.contact.id,
                    inbox_id=conv.inbox_id,
                    channel=conv.channel,
                    flow_name=new.flow,
                    flow_version=new.version,
                    current_block=new.block,
                    variables=new.variables,
                    status=new.status,
                    misses=new.misses,
                )
            )
        else:
            session_id = row.id
            await tx.update_session(
                session_id,
                current_block=new.block,
                variables=new.variables,
                status=new.status,
                misses=new.misses,
            )
        await tx.insert_interaction(
            session_id=session_id,
            account_id=conv.account_id,
            conversation_id=conv.id,
            direction="in",
            kind=result.outcome.value,
            block=result.block,
            content=_said(event),
            choice=result.choice,
            message_id=event.message_id,
        )
        for action in result.actions:
            outbox_id = await tx.enqueue(
                account_id=conv.account_id,
                conversation_id=conv.id,
                session_id=session_id,
                action=encode(action),
            )
            await tx.insert_interaction(
                session_id=session_id,
                account_id=conv.account_id,
                conversation_id=conv.id,
                direction="out",
                kind=_kind(action),
                block=action.block,
                content=action.text if isinstance(action, SendText | SendOptions) else None,
                labels=action.labels if isinstance(action, AddLabels) else None,
                outbox_id=outbox_id,
            )
        log.info(
            "session.stepped",
            flow=new.flow,
            outcome=result.outcome.value,
            block=new.block,
            status=new.status.value,
            actions=len(result.actions),
        )
        return Handled(Result.ACTED, len(result.actions), new.flow)


def _session(row: SessionRow) -> Session:
    return Session(
        flow=row.flow_name,
        version=row.flow_version,
        block=row.current_block,
        status=Status(row.status),
        variables=row.variables,
        misses=row.misses,
        started_at=row.created_at,
    )


def _said(event: Event) -> str:
    match event:
        case CustomerMessage(text=text):
            return text
        case OptionSubmitted(title=title, value=value):
            return title or value


def _kind(action: engine.Action) -> str:
    match action:
        case SendText():
            return "text"
        case SendOptions():
            return "options"
        case AddLabels():
            return "labels"
        case Handoff():
            return "handoff"
