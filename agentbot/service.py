"""One Chatwoot event, one transaction: dedupe, lock the conversation, step, save, queue.

Nothing here talks to Chatwoot: the actions go to the outbox in the same transaction as the new
session state, so the webhook can answer as soon as they are committed and a crash after that
loses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg
import structlog

from agentbot import channels, engine, events, lifecycle
from agentbot.catalog import Catalog
from agentbot.engine import (
    AddLabels,
    CallWebhook,
    Handoff,
    PrivateNote,
    SaveAttribute,
    SendOptions,
    SendText,
    Session,
    Status,
)
from agentbot.errors import StoreError
from agentbot.events import (
    AgentMessage,
    Conversation,
    ConversationChanged,
    CustomerMessage,
    DeliveryFailed,
    Event,
    Notice,
    OptionSubmitted,
    WidgetOpened,
)
from agentbot.flows import Button, Flow
from agentbot.matching import match
from agentbot.outbox import encode
from agentbot.store import NewSession, SessionRow, SessionState, Store, Tx
from agentbot.templates import render

log = structlog.get_logger("agentbot.service")


class Result(StrEnum):
    ACTED = "acted"
    DUPLICATE = "duplicate"
    NO_FLOW = "no_flow"
    QUIET = "quiet"
    HUMANS = "humans"  # humans hold the conversation now: the bot stepped back
    CLOSED = "closed"  # the session ended with the conversation's resolve (or a new pending)
    RECORDED = "recorded"  # noted (a delivery failure, a change that needs nothing)
    BUSY = "busy"  # a start was asked for a conversation whose session is still running
    BOT = "bot"  # an agent gave the conversation back to the bot (/bot, the label `bot`)
    PAUSED = "paused"  # an agent paused the bot for a while (/pause N)
    SNOOZED = "snoozed"  # the conversation was snoozed: the flow's timers stopped
    HELD = "held"  # part of a burst (the flow's `debounce`): answered when the window closes


@dataclass(frozen=True, slots=True)
class Where:
    """The Chatwoot conversation an event is about, as the rows need it."""

    account_id: int
    conversation_id: int
    channel: str | None
    inbox_id: int | None
    contact_id: int | None


@dataclass(frozen=True, slots=True)
class Handled:
    result: Result
    actions: int = 0
    flow: str | None = None


Then = Callable[[Tx, SessionRow | None], Awaitable[Handled]]


@dataclass(slots=True)
class _Job:
    """One event waiting for its transaction: take_in's arguments, what to do with the
    session, and where the answer goes."""

    take: dict[str, Any]
    then: Then
    done: asyncio.Future[Handled]

    @property
    def key(self) -> tuple[int, int]:
        return (int(self.take["account_id"]), int(self.take["conversation_id"]))


class GroupCommit:
    """Events that arrive together share one transaction and one commit.

    Whoever submits an event while fewer than `writers` batches run becomes a writer: it takes
    the waiting events (up to `limit`, one per conversation, none of a conversation another
    batch holds), takes them all in with one round trip, acts on each in order of arrival
    within its conversation, commits once, and goes on until nothing waits. A batch that fails
    is done again one event per transaction, so an event that cannot be stored fails alone.
    Conversations are locked in one order (account, conversation) so batches cannot deadlock.
    """

    def __init__(self, store: Store, *, limit: int = 64, writers: int = 4) -> None:
        self.store = store
        self.limit = limit
        self.writers = writers
        self._waiting: list[_Job] = []
        self._held: set[tuple[int, int]] = set()
        self._running = 0
        self._orphans: set[asyncio.Task[None]] = set()

    async def submit(self, job: _Job) -> Handled:
        self._waiting.append(job)
        if self._running < self.writers:
            await self._write()
        return await job.done

    async def _write(self) -> None:
        self._running += 1
        try:
            while self._waiting:
                batch = self._take()
                if not batch:
                    break
                await self._commit(batch)
        finally:
            self._running -= 1
            if self._waiting and self._running == 0:
                # This writer was cancelled (its request went away) with events still waiting.
                task = asyncio.get_running_loop().create_task(self._write())
                self._orphans.add(task)
                task.add_done_callback(self._orphans.discard)

    def _take(self) -> list[_Job]:
        batch: list[_Job] = []
        keys: set[tuple[int, int]] = set()
        rest: list[_Job] = []
        for job in self._waiting:
            if len(batch) < self.limit and job.key not in keys and job.key not in self._held:
                batch.append(job)
                keys.add(job.key)
            else:
                rest.append(job)
        self._waiting = rest
        self._held |= keys
        batch.sort(key=lambda j: j.key)
        return batch

    async def _commit(self, batch: list[_Job]) -> None:
        try:
            try:
                results = await self._transaction(batch)
            except Exception as exc:
                if len(batch) == 1 or _database_away(exc):
                    for job in batch:
                        job.done.set_exception(exc)
                    return
                for job in batch:
                    try:
                        [handled] = await self._transaction([job])
                    except Exception as alone:
                        job.done.set_exception(alone)
                    else:
                        job.done.set_result(handled)
                return
            for job, handled in zip(batch, results, strict=True):
                job.done.set_result(handled)
        finally:
            self._held -= {job.key for job in batch}
            for job in batch:
                if not job.done.done():
                    job.done.set_exception(StoreError("the event's transaction was interrupted"))

    async def _transaction(self, batch: list[_Job]) -> list[Handled]:
        results = []
        async with self.store.transaction() as tx:
            taken = await tx.take_in_many([job.take for job in batch])
            for job, (fresh, row) in zip(batch, taken, strict=True):
                results.append(await job.then(tx, row) if fresh else Handled(Result.DUPLICATE))
        return results


def _database_away(exc: Exception) -> bool:
    """The database could not be reached: each event alone would fail the same way, slower."""
    cause = exc.__cause__
    return isinstance(exc, StoreError) and isinstance(
        cause, psycopg.OperationalError | TimeoutError
    )


class Service:
    def __init__(
        self, store: Store, catalog: Catalog, *, on_commit: Callable[[], None] = lambda: None
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.on_commit = on_commit
        self.group = GroupCommit(store)

    async def handle(
        self,
        event: Event,
        *,
        event_name: str,
        delivery_id: str | None,
        now: datetime,
        payload: Mapping[str, Any] | None = None,
    ) -> Handled:
        """A customer's message or widget answer: step the conversation's flow, unless
        lifecycle.py says someone else holds the conversation.

        With the webhook's `payload`, a flow with `debounce` holds the message instead (it is
        committed all the same) and `release_burst` answers the burst when the window closes.
        """

        async def step(tx: Tx, row: SessionRow | None) -> Handled:
            admitted = await self._admit(tx, row, event, now)
            if admitted is None:
                return Handled(Result.QUIET, flow=None if row is None else row.flow_name)
            handled: Handled | None = None
            if payload is not None:
                window = await self._window(tx, row, event)
                if window is not None:
                    handled = await self._hold(tx, row, event, payload, now, window)
            if handled is None:
                handled = await self._step(tx, row, event, now)
            return replace(handled, actions=handled.actions + admitted)

        return await self._intake(event, event_name, delivery_id, step)

    async def _admit(
        self, tx: Tx, row: SessionRow | None, event: Event, now: datetime
    ) -> int | None:
        """lifecycle.py's word on a customer's message: None when someone else holds the
        conversation (the bot stays quiet), else how many actions the decision queued (the
        status set back to `pending` when the message wakes a snoozed conversation)."""
        conv = event.conversation
        state = await _state(tx, conv, row)
        keyword = lifecycle.names_a_flow(self.catalog.current.values(), _said(event))
        decision = lifecycle.on_message(state, conv.status, now, keyword=keyword)
        await _keep_hold(tx, conv, state, decision)
        if decision.act is not lifecycle.Act.ENGINE:
            log.info("message.quiet", reason=decision.reason, status=conv.status)
            return None
        where = _where(conv, event.contact.id)
        await self._queue(tx, None if row is None else row.id, where, decision.actions)
        return len(decision.actions)

    async def _window(
        self, tx: Tx, row: SessionRow | None, event: CustomerMessage | OptionSubmitted
    ) -> timedelta | None:
        """How long to hold this message: its flow's `debounce`; zero when the flow has none but
        earlier messages are held (they are answered first); None to answer it now."""
        conv = event.conversation
        flow: Flow | None = None
        if row is not None and row.status == Status.ACTIVE:
            flow = await self.catalog.version(row.flow_name, row.flow_version)
        elif row is None or row.status != Status.HANDED_OFF:
            flows = list(self.catalog.current.values())
            flow = engine.choose_flow(flows, conv.inbox_id, _said(event))
        if flow is not None and flow.debounce is not None:
            return flow.debounce
        if await tx.holds_burst(conv.account_id, conv.id):
            return timedelta(0)
        return None

    async def _hold(
        self,
        tx: Tx,
        row: SessionRow | None,
        event: CustomerMessage | OptionSubmitted,
        payload: Mapping[str, Any],
        now: datetime,
        window: timedelta,
    ) -> Handled:
        conv = event.conversation
        await tx.hold_message(conv.account_id, conv.id, payload, now, now + window)
        await tx.insert_interaction(
            session_id=row.id if row is not None and row.status == Status.ACTIVE else None,
            account_id=conv.account_id,
            conversation_id=conv.id,
            direction="in",
            kind="held",
            block=row.current_block if row is not None and row.status == Status.ACTIVE else None,
            content=_said(event),
            message_id=event.message_id if isinstance(event, CustomerMessage) else None,
        )
        log.info("burst.held", window=window.total_seconds())
        return Handled(Result.HELD, flow=row.flow_name if row is not None else None)

    async def release_burst(self, account_id: int, conversation_id: int, now: datetime) -> Handled:
        """Answer a conversation's held messages as one, if their window has closed by `now`
        (another replica, or a message that joined the burst, may have moved it)."""
        async with self.store.transaction() as tx:
            await tx.lock_conversation(account_id, conversation_id)
            payloads = await tx.take_burst(account_id, conversation_id, now)
            if payloads is None:
                return Handled(Result.QUIET)
            burst = [
                event
                for event in (events.parse(payload) for payload in payloads)
                if isinstance(event, CustomerMessage | OptionSubmitted)
            ]
            if not burst:
                return Handled(Result.RECORDED)
            row = await tx.latest_session(account_id, conversation_id)
            event = await self._burst_event(row, burst, now)
            # Who holds the conversation may have changed while the messages were held (an
            # agent's /pause, a snooze): lifecycle.py decides again, as for a message now.
            admitted = await self._admit(tx, row, event, now)
            if admitted is None:
                return Handled(Result.QUIET, flow=None if row is None else row.flow_name)
            handled = await self._step(tx, row, event, now)
            handled = replace(handled, actions=handled.actions + admitted)
        log.info("burst.answered", messages=len(burst), result=handled.result.value)
        if handled.actions:
            self.on_commit()
        return handled

    async def _burst_event(
        self,
        row: SessionRow | None,
        burst: list[CustomerMessage | OptionSubmitted],
        now: datetime,
    ) -> CustomerMessage | OptionSubmitted:
        """The event the burst is answered as: the engine decides from the flow it runs on,
        or, for a new session, from the flows a message may start."""
        if row is not None and row.status == Status.ACTIVE:
            flow = await self.catalog.version(row.flow_name, row.flow_version)
            if flow is not None:
                session = _session(row)
                expanded = [
                    _expand_reply(flow, session, e) if isinstance(e, CustomerMessage) else e
                    for e in burst
                ]
                return engine.burst_answer(flow, session, expanded, now)
            return burst[-1]
        flows = list(self.catalog.current.values())
        return engine.burst_opening(flows, burst[0].conversation.inbox_id, burst)

    async def notice(
        self, notice: Notice, *, event_name: str, delivery_id: str | None, now: datetime
    ) -> Handled:
        """Who holds the conversation changed, or the channel refused a message."""

        async def act(tx: Tx, row: SessionRow | None) -> Handled:
            return await self._notice(tx, row, notice, now)

        return await self._intake(notice, event_name, delivery_id, act)

    async def widget_opened(
        self, event: WidgetOpened, *, event_name: str, delivery_id: str | None, now: datetime
    ) -> Handled:
        """A visitor opened the web widget: greet with the inbox's widget flow, once per
        conversation (a conversation that ever had a session is left alone)."""

        async def greet(tx: Tx, row: SessionRow | None) -> Handled:
            conv = event.conversation
            flows = list(self.catalog.current.values())
            flow = engine.choose_widget_flow(flows, conv.inbox_id)
            if flow is None or not lifecycle.may_greet(await _state(tx, conv, row), now):
                return Handled(Result.RECORDED)
            where = _where(conv, event.contact.id)
            context = engine.snapshot(event.contact, conv)
            result = engine.start(flow, now, context=context)
            return await self._save(tx, None, where, result, event=None, now=now)

        return await self._intake(event, event_name, delivery_id, greet)

    async def _intake(
        self,
        event: Event | Notice | WidgetOpened,
        event_name: str,
        delivery_id: str | None,
        then: Callable[[Tx, SessionRow | None], Awaitable[Handled]],
    ) -> Handled:
        """Take the event in once, lock its conversation, act on it: in one transaction with
        the other events arriving meanwhile (a group commit; see `GroupCommit`)."""
        conv = event.conversation
        job = _Job(
            {
                "delivery_id": delivery_id,
                "dedupe_key": event.dedupe_key,
                "event": event_name,
                "account_id": conv.account_id,
                "conversation_id": conv.id,
            },
            then,
            asyncio.get_running_loop().create_future(),
        )
        handled = await self.group.submit(job)
        if handled.actions:
            self.on_commit()
        return handled

    async def _notice(
        self, tx: Tx, row: SessionRow | None, notice: Notice, now: datetime
    ) -> Handled:
        conv = notice.conversation
        if _humans_step_in(notice) and await tx.drop_burst(conv.account_id, conv.id):
            # messages held for a debounce are the humans' now: the bot never answers them
            log.info("burst.dropped", reason="humans stepped in")
        if isinstance(notice, DeliveryFailed):
            return await self._delivery_failed(tx, row, conv, notice.message_id, notice.error)
        state = await _state(tx, conv, row)
        decision = lifecycle.on_notice(state, notice, now)
        await _keep_hold(tx, conv, state, decision)
        if decision.end is not None and row is not None:
            await self._end_session(tx, row, conv, decision.end, decision.reason)
        elif decision.reason:
            await tx.insert_interaction(
                session_id=None if row is None else row.id,
                account_id=conv.account_id,
                conversation_id=conv.id,
                direction="in",
                kind=decision.reason,
                block=None if row is None else row.current_block,
            )
        if decision.stop_timers and row is not None and row.status == Status.ACTIVE:
            session = replace(_session(row), timeout_at=None, inactive_at=None)
            await tx.update_session(row.id, _state_of(session))
        contact_id = None if row is None else row.contact_id
        where = _where(conv, contact_id)
        await self._queue(tx, None if row is None else row.id, where, decision.actions)
        log.info(
            "conversation.holder",
            act=decision.act.value,
            reason=decision.reason,
            hold=decision.hold,
            flow=None if row is None else row.flow_name,
        )
        result = _RESULTS[decision.act]
        return Handled(result, len(decision.actions), None if row is None else row.flow_name)

    async def _takeover(
        self,
        tx: Tx,
        row: SessionRow,
        conv: Conversation,
        kind: str,
        actions: tuple[Handoff, ...],
    ) -> Handled:
        await self._end_session(tx, row, conv, Status.HANDED_OFF, kind)
        where = _where(conv, row.contact_id)
        await self._queue(tx, row.id, where, actions)
        log.info("session.humans", reason=kind, flow=row.flow_name, block=row.current_block)
        return Handled(Result.HUMANS, len(actions), row.flow_name)

    async def _end_session(
        self, tx: Tx, row: SessionRow, conv: Conversation, status: str, kind: str
    ) -> None:
        """The session stops where it is, for the reason `kind`, kept in the history."""
        await tx.set_session_status(row.id, status)
        await tx.insert_interaction(
            session_id=row.id,
            account_id=conv.account_id,
            conversation_id=conv.id,
            direction="in",
            kind=kind,
            block=row.current_block,
        )

    async def _delivery_failed(
        self, tx: Tx, row: SessionRow | None, conv: Conversation, message_id: int, error: str
    ) -> Handled:
        sent = await tx.sent_message(conv.account_id, message_id)
        if sent is None:
            log.warning("delivery.failed_unknown", message_id=message_id, error=error[:200])
            return Handled(Result.RECORDED)
        await tx.record_error(sent.id, error)
        log.warning("delivery.failed", message_id=message_id, block=sent.block, error=error[:200])
        # The customer never saw the question the session waits on: humans must take over.
        if (
            row is not None
            and row.status == Status.ACTIVE
            and row.id == sent.session_id
            and sent.block == row.current_block
        ):
            reason = f"the channel refused the question: {error[:150]}"
            return await self._takeover(
                tx, row, conv, "delivery_failed", (Handoff(reason, row.current_block),)
            )
        return Handled(Result.RECORDED)

    async def _queue(
        self,
        tx: Tx,
        session_id: int | None,
        where: Where,
        actions: tuple[engine.Action, ...],
        template_params: Mapping[str, Any] | None = None,
    ) -> None:
        for action in actions:
            data = encode(action)
            if template_params is not None and isinstance(action, SendText | SendOptions):
                # The first message carries the template; the rest wait for the customer's
                # answer, which opens the window again.
                data["template_params"] = dict(template_params)
                template_params = None
            if isinstance(action, SaveAttribute) and action.scope == "contact":
                data["contact_id"] = where.contact_id
            await tx.queue_action(
                account_id=where.account_id,
                conversation_id=where.conversation_id,
                session_id=session_id,
                action=data,
                channel=where.channel,
                kind=str(data["type"]),
                block=action.block,
                content=_content(action),
                labels=action.labels if isinstance(action, AddLabels) else None,
            )

    async def _step(self, tx: Tx, row: SessionRow | None, event: Event, now: datetime) -> Handled:
        conv = event.conversation
        where = _where(conv, event.contact.id)
        if row is not None and row.status == Status.ACTIVE:
            flow = await self._flow_of(tx, row, where)
            if flow is None:
                return Handled(Result.ACTED, 1, row.flow_name)
            session = _session(row)
            if isinstance(event, CustomerMessage):
                stale = await self._stale_reply(tx, row, flow, event)
                if stale is not None:
                    return await self._save(
                        tx, row, where, _ask_again(flow, session, stale), event=event, now=now
                    )
                event = _expand_reply(flow, session, event)
            result = engine.step(flow, session, event, now)
            return await self._save(tx, row, where, result, event=event, now=now)
        chosen = engine.choose_flow(
            list(self.catalog.current.values()), conv.inbox_id, _said(event)
        )
        if chosen is None:
            log.warning("session.no_flow", inbox_id=conv.inbox_id, conversation_id=conv.id)
            return Handled(Result.NO_FLOW)
        result = engine.step(chosen, None, event, now)
        return await self._save(tx, None, where, result, event=event, now=now)

    async def start(
        self,
        where: Where,
        flow: Flow,
        *,
        variables: Mapping[str, Any],
        context: Mapping[str, Any],
        now: datetime,
        template_params: Mapping[str, Any] | None = None,
    ) -> Handled:
        """Start `flow` proactively (POST /api/workflow/start). A running session is not
        replaced: the result is BUSY. With `template_params` (WhatsApp outside its 24-hour
        window), the first message goes out as that approved template."""
        async with self.store.transaction() as tx:
            await tx.lock_conversation(where.account_id, where.conversation_id)
            row = await tx.latest_session(where.account_id, where.conversation_id)
            if row is not None and row.status in (Status.ACTIVE, Status.HANDED_OFF):
                return Handled(Result.BUSY, 0, row.flow_name)
            result = engine.start(flow, now, variables=variables, context=context)
            handled = await self._save(
                tx, None, where, result, event=None, now=now, template_params=template_params
            )
        if handled.actions:
            self.on_commit()
        return handled

    async def _stale_reply(
        self, tx: Tx, row: SessionRow, flow: Flow, event: CustomerMessage
    ) -> str | None:
        """The block of an older question this WhatsApp reply answers (`in_reply_to`), if it
        is not the question the session waits on now and the reply is one of that question's
        options. A quote-reply with other text ("atendente", an answer typed out) is an
        ordinary message."""
        if event.in_reply_to is None:
            return None
        sent = await tx.sent_message(event.conversation.account_id, event.in_reply_to)
        if sent is None or sent.session_id != row.id or sent.kind != "options":
            return None
        if sent.block == row.current_block:
            return None
        quoted = flow.blocks.get(sent.block or "")
        if quoted is None or not _is_option(event, quoted.buttons):
            return None
        return sent.block

    async def resume(
        self,
        tx: Tx,
        account_id: int,
        conversation_id: int,
        event: engine.WebhookReply | engine.TimerFired,
        now: datetime,
    ) -> Handled:
        """Step the conversation's session with an event of our own (a webhook's answer, a
        timer), inside the caller's transaction."""
        await tx.lock_conversation(account_id, conversation_id)
        row = await tx.latest_session(account_id, conversation_id)
        if row is None or row.status != Status.ACTIVE:
            return Handled(Result.QUIET)
        where = Where(account_id, conversation_id, row.channel, row.inbox_id, row.contact_id)
        flow = await self._flow_of(tx, row, where)
        if flow is None:
            return Handled(Result.ACTED, 1, row.flow_name)
        result = engine.step(flow, _session(row), event, now)
        return await self._save(tx, row, where, result, event=None, now=now)

    async def fire_timer(self, account_id: int, conversation_id: int, now: datetime) -> Handled:
        """Fire the session's due deadline, if it still is due (another replica may have)."""
        async with self.store.transaction() as tx:
            await tx.lock_conversation(account_id, conversation_id)
            row = await tx.latest_session(account_id, conversation_id)
            if row is None or row.status != Status.ACTIVE:
                return Handled(Result.QUIET)
            if row.timeout_at is not None and row.timeout_at <= now:
                event = engine.TimerFired("timeout", row.current_block)
            elif row.inactive_at is not None and row.inactive_at <= now:
                event = engine.TimerFired("inactivity", row.current_block)
            else:
                return Handled(Result.QUIET)
            handled = await self.resume(tx, account_id, conversation_id, event, now)
        log.info("timer.fired", kind=event.kind, conversation_id=conversation_id)
        if handled.actions:
            self.on_commit()
        return handled

    async def _flow_of(self, tx: Tx, row: SessionRow, where: Where) -> Flow | None:
        """The flow version the session runs on; when it is gone, the session is handed off."""
        flow = await self.catalog.version(row.flow_name, row.flow_version)
        if flow is not None:
            return flow
        log.error(
            "session.flow_gone",
            flow=row.flow_name,
            version=row.flow_version,
            conversation_id=row.conversation_id,
        )
        await tx.set_session_status(row.id, Status.HANDED_OFF)
        reason = f"flow {row.flow_name} version {row.flow_version} is gone"
        await self._queue(tx, row.id, where, (Handoff(reason, row.current_block),))
        return None

    async def _save(
        self,
        tx: Tx,
        row: SessionRow | None,
        where: Where,
        result: engine.Step,
        *,
        event: Event | None,
        now: datetime,
        template_params: Mapping[str, Any] | None = None,
    ) -> Handled:
        new = result.session
        assert new is not None
        if result.outcome is engine.Outcome.BLOCK_GONE:
            log.error(
                "session.block_gone",
                flow=new.flow,
                version=new.version,
                block=result.block,
                conversation_id=where.conversation_id,
            )
        state = _state_of(new)
        if row is None:
            session_id = await tx.insert_session(
                NewSession(
                    account_id=where.account_id,
                    conversation_id=where.conversation_id,
                    contact_id=where.contact_id,
                    inbox_id=where.inbox_id,
                    channel=where.channel,
                    flow_name=new.flow,
                    flow_version=new.version,
                    state=state,
                )
            )
        else:
            session_id = row.id
            await tx.update_session(session_id, state)
        await tx.insert_interaction(
            session_id=session_id,
            account_id=where.account_id,
            conversation_id=where.conversation_id,
            direction="in",
            kind=result.outcome.value,
            block=result.block,
            content=None if event is None else _said(event),
            choice=result.choice,
            message_id=None if event is None else event.message_id,
        )
        # For GET /api/stats: each block entered (the funnel's "entered"), and each A/B split
        # passed, whose arm the stats count as the split block's choice.
        funnel: list[tuple[str, str, str, str | None]] = [
            ("out", "entered", block, None) for block in result.entered
        ]
        funnel += [("in", "split", block, arm) for block, arm in result.splits]
        for direction, kind, block, choice in funnel:
            await tx.insert_interaction(
                session_id=session_id,
                account_id=where.account_id,
                conversation_id=where.conversation_id,
                direction=direction,
                kind=kind,
                block=block,
                choice=choice,
            )
        if template_params is None:
            template_params = result.template
        await self._queue(tx, session_id, where, result.actions, template_params)
        for action in result.withheld:
            # Outside WhatsApp's 24-hour window, without a template: not sent, kept in history.
            await tx.insert_interaction(
                session_id=session_id,
                account_id=where.account_id,
                conversation_id=where.conversation_id,
                direction="out",
                kind="withheld",
                block=action.block,
                content=_content(action),
            )
        if result.withheld:
            log.info("session.withheld", reason="whatsapp_window", messages=len(result.withheld))
        if lifecycle.rests(result):
            # A courtesy reply right after the flow's end is not a new conversation.
            until = now + lifecycle.QUIET_AFTER_END
            await tx.set_hold(
                where.account_id, where.conversation_id, lifecycle.Hold.RESTING, until
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


_RESULTS = {
    lifecycle.Act.HUMANS: Result.HUMANS,
    lifecycle.Act.CLOSED: Result.CLOSED,
    lifecycle.Act.BOT: Result.BOT,
    lifecycle.Act.PAUSED: Result.PAUSED,
    lifecycle.Act.SNOOZED: Result.SNOOZED,
    lifecycle.Act.RECORDED: Result.RECORDED,
    lifecycle.Act.QUIET: Result.QUIET,
    lifecycle.Act.ENGINE: Result.ACTED,
}


async def _state(tx: Tx, conv: Conversation, row: SessionRow | None) -> lifecycle.State:
    """What lifecycle.py needs to know of the conversation: its latest session and its hold."""
    held = await tx.hold(conv.account_id, conv.id)
    return lifecycle.State(
        session=None if row is None else row.status,
        block="" if row is None else row.current_block,
        hold=None if held is None else lifecycle.Hold(held[0]),
        until=None if held is None else held[1],
    )


async def _keep_hold(
    tx: Tx, conv: Conversation, state: lifecycle.State, decision: lifecycle.Decision
) -> None:
    """Store the conversation's hold as the decision leaves it, when it changed."""
    if (decision.hold, decision.until) != (state.hold, state.until):
        kind = None if decision.hold is None else decision.hold.value
        await tx.set_hold(conv.account_id, conv.id, kind, decision.until)


def _state_of(session: Session) -> SessionState:
    return SessionState(
        current_block=session.block,
        variables=session.variables,
        status=session.status,
        misses=session.misses,
        waiting=session.waiting,
        timeout_at=session.timeout_at,
        inactive_at=session.inactive_at,
        context=session.context,
    )


def _humans_step_in(notice: Notice) -> bool:
    """An agent wrote, took the conversation, or it was opened or resolved."""
    if isinstance(notice, AgentMessage):
        return True
    if not isinstance(notice, ConversationChanged):
        return False
    status = notice.status_changed and notice.conversation.status in ("open", "resolved")
    return status or (notice.assigned and notice.assignee_type == "User")


def _where(conv: Conversation, contact_id: int | None) -> Where:
    """Where a customer's event is about; messages follow the rules of the channel they are
    delivered on (Instagram through a Facebook Page is Instagram)."""
    channel = channels.delivery_channel(conv.channel, conv.kind)
    return Where(conv.account_id, conv.id, channel, conv.inbox_id, contact_id)


def _ask_again(flow: Flow, session: Session, stale: str) -> engine.Step:
    """A tap on a button of an older question: ask the current one again, count no miss."""
    block = flow.blocks.get(session.block)
    actions: tuple[engine.Action, ...] = ()
    if block is not None and block.buttons and block.message is not None:
        names = engine.scope(session)
        speak = engine.language(flow, names)
        text = render(block.messages.get(speak or "", block.message), names)
        actions = (SendOptions(text, engine.options(block, speak), block.id),)
    return engine.Step(session, actions, engine.Outcome.IGNORED, stale)


def _is_option(event: CustomerMessage, buttons: tuple[Button, ...]) -> bool:
    """The reply is the title or the value of one of these options (as the channel showed it)."""
    titles = [b.text for b in buttons]
    full = channels.expand_reply(event.conversation.channel, event.text, titles)
    return match(buttons, [full], positions=False, loose=False).button is not None


def _expand_reply(flow: Flow, session: Session, event: CustomerMessage) -> CustomerMessage:
    """A title shortened for the channel (WhatsApp's 20/24 characters) is the full title."""
    block = flow.blocks.get(session.block)
    if block is None or not block.buttons:
        return event
    speak = engine.language(flow, engine.scope(session))
    titles = [b.title(speak) for b in block.buttons]  # as they were sent
    full = channels.expand_reply(event.conversation.channel, event.text, titles)
    return event if full == event.text else replace(event, text=full)


def _session(row: SessionRow) -> Session:
    return Session(
        flow=row.flow_name,
        version=row.flow_version,
        block=row.current_block,
        status=Status(row.status),
        variables=row.variables,
        misses=row.misses,
        started_at=row.created_at,
        waiting=engine.Waiting(row.waiting),
        timeout_at=row.timeout_at,
        inactive_at=row.inactive_at,
        context=row.context,
    )


def _said(event: Event) -> str:
    match event:
        case CustomerMessage(text=text):
            return text
        case OptionSubmitted(title=title, value=value):
            return title or value


def _content(action: engine.Action) -> str | None:
    match action:
        case SendText(text=text) | SendOptions(text=text) | PrivateNote(text=text):
            return text
        case CallWebhook(method=method, url=url):
            return f"{method} {url}"
        case SaveAttribute(scope=scope, key=key, value=value):
            return f"{scope}.custom_attributes.{key} = {value!r}"[:500]
        case _:
            return None
