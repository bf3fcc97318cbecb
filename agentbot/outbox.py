"""The outbox worker: carries out the actions the engine decided, in order per conversation.

Two layers of retry. Inside one attempt, tenacity retries a call Chatwoot did not answer (a
timeout, a 5xx, a 429) a few times within seconds; a Chatwoot that cannot be reached at all is
left to the next attempt. Across attempts, the row's `attempts` and
`next_attempt_at` come from the pure `RetryPolicy.next_delay`, so a restart or an outage only
delays a reply. A 4xx other than 429 is final: the row is dead-lettered with Chatwoot's answer
and the conversation handed off, since the customer would otherwise wait for a bot that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar, assert_never

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from agentbot import channels, jsonsafe
from agentbot.chatwoot import ChatwootClient
from agentbot.engine import (
    Action,
    AddLabels,
    Assign,
    BackToBot,
    CallWebhook,
    Handoff,
    Option,
    PrivateNote,
    Resolve,
    SaveAttribute,
    SendOptions,
    SendText,
    WebhookReply,
)
from agentbot.errors import ChatwootRejected, ChatwootUnavailable, StoreError
from agentbot.jsonsafe import clean_text
from agentbot.store import Claim, OutboxRow, Store, Tx

log = structlog.get_logger("agentbot.outbox")

# What the service does with a webhook's answer: step the flow inside the claim's transaction.
ReplyHandler = Callable[["Tx", "OutboxRow", WebhookReply], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try again. Defaults: at most 60 s apart, given up after at least an hour."""

    in_process_attempts: int = 3
    in_process_seconds: float = 10.0
    in_process_wait_max: float = 5.0
    first_delay: float = 1.0
    max_delay: float = 60.0
    give_up_after: float = 3600.0
    min_attempts: int = 10
    flood_delay: float = 60.0  # Chatwoot counts messages per conversation per minute
    # An action that fails with an error nobody foresaw (a bug, data Chatwoot or the database
    # refuses) is tried this many times, with backoff, before it is dead-lettered.
    unexpected_attempts: int = 3

    def next_delay(
        self, attempts: int, age_seconds: float, retry_after: float | None = None
    ) -> float | None:
        """Seconds until the next attempt after `attempts` failed ones, or None to give up."""
        if attempts >= self.min_attempts and age_seconds >= self.give_up_after:
            return None
        delay = min(self.max_delay, self.first_delay * 2.0 ** max(0, attempts - 1))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.give_up_after))
        return delay


def encode(action: Action) -> dict[str, Any]:
    """An engine action as the JSON stored in the outbox."""
    match action:
        case SendText(text=text, block=block):
            return {"type": "text", "text": text, "block": block}
        case SendOptions(text=text, options=options, block=block):
            items = [{"title": o.title, "value": o.value} for o in options]
            return {"type": "options", "text": text, "options": items, "block": block}
        case AddLabels(labels=labels, block=block):
            return {"type": "labels", "labels": list(labels), "block": block}
        case Handoff(reason=reason, block=block):
            return {"type": "handoff", "reason": reason, "block": block}
        case BackToBot(reason=reason, block=block):
            return {"type": "back_to_bot", "reason": reason, "block": block}
        case Assign(team_id=team_id, assignee_id=assignee_id, block=block):
            return {
                "type": "assign",
                "team_id": team_id,
                "assignee_id": assignee_id,
                "block": block,
            }
        case PrivateNote(text=text, block=block):
            return {"type": "note", "text": text, "block": block}
        case Resolve(block=block):
            return {"type": "resolve", "block": block}
        case SaveAttribute(scope=scope, key=key, value=value, block=block):
            return {"type": "attribute", "scope": scope, "key": key, "value": value, "block": block}
        case CallWebhook() as call:
            return {
                "type": "webhook",
                "url": call.url,
                "method": call.method,
                "headers": dict(call.headers),
                "body": call.body,
                "timeout": call.timeout,
                "retry": call.retry,
                "block": call.block,
            }
        case _:
            assert_never(action)


def decode(data: Mapping[str, Any]) -> Action:
    block = str(data.get("block") or "")
    kind = data.get("type")
    if kind == "text":
        return SendText(str(data["text"]), block)
    if kind == "options":
        options = tuple(Option(str(o["title"]), str(o["value"])) for o in data["options"])
        return SendOptions(str(data["text"]), options, block)
    if kind == "labels":
        return AddLabels(tuple(str(x) for x in data["labels"]), block)
    if kind == "handoff":
        return Handoff(str(data.get("reason") or ""), block)
    if kind == "back_to_bot":
        return BackToBot(str(data.get("reason") or ""), block)
    if kind == "assign":
        return Assign(_opt_int(data.get("team_id")), _opt_int(data.get("assignee_id")), block)
    if kind == "note":
        return PrivateNote(str(data["text"]), block)
    if kind == "resolve":
        return Resolve(block)
    if kind == "attribute":
        scope = data["scope"]
        if scope not in ("conversation", "contact"):
            raise ValueError(f"unknown attribute scope {scope!r}")
        return SaveAttribute(scope, str(data["key"]), data.get("value"), block)
    if kind == "webhook":
        return CallWebhook(
            url=str(data["url"]),
            method=str(data["method"]),
            headers={str(k): str(v) for k, v in dict(data.get("headers") or {}).items()},
            body=data.get("body"),
            timeout=float(data["timeout"]),
            retry=bool(data["retry"]),
            block=block,
        )
    raise ValueError(f"unknown outbox action type {kind!r}")


def _opt_int(value: object) -> int | None:
    return None if value is None else int(str(value))


class Outbox:
    """Delivers the outbox: claims heads of conversations' queues in batches, one short
    transaction per claim and per settlement, never one held across a call to Chatwoot.

    An attempt is recorded (counted and leased) before Chatwoot is called. When its outcome is
    unknown (the worker died, the database went away before the outcome was written, or
    Chatwoot's answer was lost), the next attempt of a message first reads the conversation's
    newest message from Chatwoot and takes a match as the delivery; docs/guarantees.md says
    what that check can and cannot see.
    """

    def __init__(
        self,
        store: Store,
        client: ChatwootClient | None,
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = 4,
        batch: int = 16,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        probe_interval: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        webhooks: httpx.AsyncClient | None = None,
        on_reply: ReplyHandler | None = None,
        on_sent: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.policy = policy or RetryPolicy()
        self.concurrency = concurrency
        self.batch = batch
        self.lease = lease
        self.poll_interval = poll_interval
        self.probe_interval = probe_interval
        self.sleep = sleep
        self.clock = clock
        self.webhooks = webhooks
        self.on_reply = on_reply
        self.on_sent = on_sent  # seconds from the row's creation to Chatwoot accepting it
        self._wakeup = asyncio.Event()
        self._slots: set[asyncio.Task[None]] = set()
        self._to_settle: list[tuple[Sent, asyncio.Future[None]]] = []
        self._settling = False

    def wake(self) -> None:
        """New work was committed: look now rather than at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        """Deliver until cancelled. Without a Chatwoot client, replies wait in the outbox."""
        if self.client is None:
            log.warning("outbox.waiting", reason="Chatwoot is not configured")
            await asyncio.Event().wait()
        loop = asyncio.get_running_loop()
        last_probe = loop.time()
        try:
            while True:
                self._wakeup.clear()
                # Every slot alive is busy delivering (an idle one ends), so new work gets a
                # new slot: a conversation Chatwoot answers slowly holds up no other.
                if len(self._slots) < self.concurrency:
                    # Rows waiting out a backoff may wait up to a minute; a probe every few
                    # seconds notices Chatwoot's return and wakes them all.
                    probe = loop.time() - last_probe >= self.probe_interval
                    if probe:
                        last_probe = loop.time()
                    self._spawn(probe=probe)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.poll_interval)
        finally:
            for task in self._slots:
                task.cancel()
            await asyncio.gather(*self._slots, return_exceptions=True)

    def _spawn(self, *, probe: bool = False) -> None:
        task = asyncio.create_task(self._slot(probe=probe))
        self._slots.add(task)
        task.add_done_callback(self._slot_done)

    def _slot_done(self, task: asyncio.Task[None]) -> None:
        self._slots.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox.slot_failed", error=repr(task.exception()))

    async def _slot(self, *, probe: bool = False) -> None:
        """Claim a batch of heads (each of another conversation), deliver them side by side,
        and again, until none is due.

        A slot that finds work starts another one, up to `concurrency`, so a slow conversation
        never holds up the others and an idle outbox costs one query per poll.
        """
        while True:
            try:
                claims = await self.store.claim(
                    probe=probe, limit=1 if probe else self.batch, lease=self.lease
                )
                probe = False
                if not claims:
                    return
                if len(claims) == self.batch and len(self._slots) < self.concurrency:
                    self._spawn()  # a full batch: more heads may be due
                if len(claims) == 1:
                    await self.deliver(claims[0])
                else:
                    outcomes = await asyncio.gather(
                        *(self.deliver(c) for c in claims), return_exceptions=True
                    )
                    for outcome in outcomes:
                        if isinstance(outcome, BaseException):
                            raise outcome
                # Claim again only when more is likely due: a full batch, a row with another
                # behind it in its conversation, or a retry that went through (an outage
                # ended, and what waited on it is due now). New work wakes the outbox anyway.
                if len(claims) < self.batch and not any(
                    c.row.has_next or c.row.attempts > 1 for c in claims
                ):
                    return
            except StoreError as exc:
                log.warning("outbox.database_unavailable", error=str(exc))
                await self.sleep(self.poll_interval)
                return

    async def run_once(self) -> int:
        """Deliver every row due now, one at a time (used by tests and `agentbot` tooling)."""
        count = 0
        while True:
            claims = await self.store.claim(lease=self.lease)
            if not claims:
                return count
            await self.deliver(claims[0])
            count += 1

    async def deliver(self, claim: Claim) -> None:
        """Carry out the claimed row and settle it (successes together with others')."""
        row = claim.row
        bound = log.bind(
            outbox_id=row.id,
            account_id=row.account_id,
            conversation_id=row.conversation_id,
            action=row.action.get("type"),
        )
        try:
            action = decode(row.action)
        except (KeyError, TypeError, ValueError) as exc:
            error = f"unreadable outbox action: {exc!r}"
            bound.error("outbox.dead", error=error)
            await self._settle(claim, lambda: claim.give_up(error=error, handoff=None))
            return
        try:
            await self._attempt(claim, action, bound)
        except StoreError:
            # The database went away while settling: an outage, not this row. The lease runs
            # out and the row is taken again (its outcome asked of Chatwoot when unsure).
            raise
        except Exception as exc:
            # Anything else (a header httpx cannot encode, a URL it cannot parse, a bug) is a
            # failed attempt with backoff: the row never spins, and is given up after a few.
            await self._unexpected(claim, action, exc)

    async def _unexpected(self, claim: Claim, action: Action, exc: Exception) -> None:
        """A failed attempt with backoff; after `unexpected_attempts`, dead and handed off.
        The claim already counted this attempt in `row.attempts`."""
        row = claim.row
        error = clean_text(f"unexpected error: {exc!r}"[:1000])
        if row.attempts >= self.policy.unexpected_attempts:
            await self._give_up(claim, action, f"gave up after {row.attempts} attempts: {error}")
            return
        age = (self.clock() - row.created_at).total_seconds()
        delay = self.policy.next_delay(row.attempts, age) or self.policy.first_delay
        log.warning(
            "outbox.failed_attempt",
            outbox_id=row.id,
            conversation_id=row.conversation_id,
            action=row.action.get("type"),
            error=error,
            attempts=row.attempts,
            delay=delay,
        )
        await self._settle(claim, partial(claim.reschedule, delay=delay, error=error))

    async def _attempt(self, claim: Claim, action: Action, bound: Any) -> None:
        row = claim.row
        if isinstance(action, CallWebhook):
            await self._call_webhook(claim, action)
            return
        assert self.client is not None
        attempt = _Attempt(unsure=row.unsure_since is not None and _creates_message(action))
        try:
            # Well inside the lease, so no other worker takes the row while this one still may
            # reach Chatwoot.
            async with asyncio.timeout(self.lease * 0.5):
                result = await self._with_retries(self.client, claim, action, attempt)
        except (ChatwootUnavailable, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                exc = ChatwootUnavailable(
                    f"no answer from Chatwoot within {self.lease * 0.5:.0f} s", maybe_done=True
                )
                attempt.unsure = attempt.unsure or _creates_message(action)
            age = (self.clock() - row.created_at).total_seconds()
            delay = self.policy.next_delay(row.attempts, age, exc.retry_after)
            if delay is not None:
                bound.info("outbox.retry", error=str(exc), attempts=row.attempts, delay=delay)
                outage = exc.retry_after is None
                retry = partial(
                    claim.reschedule,
                    delay=delay,
                    error=str(exc),
                    outage=outage,
                    unknown=attempt.unsure,
                )
                await self._settle(claim, retry)
                return
            await self._give_up(claim, action, f"gave up after {row.attempts} attempts: {exc}")
            return
        except ChatwootRejected as exc:
            if exc.status_code == 422 and "too many messages" in exc.body.lower():
                # Chatwoot's flood guard (200 messages a minute in one conversation): wait for
                # this conversation only; the others go on.
                delay = self.policy.flood_delay
                bound.warning("outbox.flood_guard", delay=delay, attempts=row.attempts)
                later = partial(claim.reschedule, delay=delay, error=str(exc))
                await self._settle(claim, later)
                return
            await self._give_up(claim, action, str(exc))
            return
        await self._record_sent(Sent(claim, result, attempt.found))

    async def _record_sent(self, sent: Sent) -> None:
        """Settle a success with the others that arrive meanwhile: one statement for all the
        successes since the previous one was written (a group commit of settlements)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._to_settle.append((sent, done))
        if not self._settling:
            await self._flush()
        await done

    async def _flush(self) -> None:
        self._settling = True
        batch: list[tuple[Sent, asyncio.Future[None]]] = []
        try:
            while self._to_settle:
                batch, self._to_settle = self._to_settle, []
                try:
                    await self._settle_sent([s for s, _ in batch])
                except Exception as exc:
                    for _, done in batch:
                        done.set_exception(exc)
                else:
                    for _, done in batch:
                        done.set_result(None)
        finally:
            self._settling = False
            for _, done in batch:
                if not done.done():
                    done.set_exception(StoreError("settling was interrupted"))
            if self._to_settle:
                task = asyncio.get_running_loop().create_task(self._flush())
                self._slots.add(task)
                task.add_done_callback(self._slot_done)

    async def _settle_sent(self, sent: list[Sent]) -> None:
        """Record several successes in one statement."""
        wake = any(s.claim.row.attempts > 1 for s in sent)
        pairs = [(s.claim, s.result) for s in sent]
        done = await self._settle(
            sent[0].claim, lambda: self.store.mark_sent_many(pairs, wake=wake)
        )
        for s in sent:
            row = s.claim.row
            if row.id in done:
                log.info(
                    "outbox.sent",
                    outbox_id=row.id,
                    conversation_id=row.conversation_id,
                    attempts=row.attempts,
                    found=s.found,
                )
                if self.on_sent is not None:
                    self.on_sent((self.clock() - row.created_at).total_seconds())
            else:
                log.warning("outbox.lease_lost", outbox_id=row.id, attempts=row.attempts)

    async def _settle(self, claim: Claim, settle: Callable[[], Awaitable[T]]) -> T:
        """Write an attempt's outcome, trying again while the database is away, for as long as
        the attempt's lease lasts; after that the row is taken again and its outcome is asked
        of Chatwoot."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease * 0.4
        while True:
            try:
                return await settle()
            except StoreError as exc:
                if loop.time() >= deadline:
                    raise
                log.warning("outbox.settle_retry", outbox_id=claim.row.id, error=str(exc))
                await self.sleep(min(1.0, self.poll_interval))

    async def _call_webhook(self, claim: Claim, call: CallWebhook) -> None:
        """Call the flow's external webhook; its answer steps the flow in the transaction that
        records the call as done."""
        assert self.webhooks is not None, "create the Outbox with webhooks= to call webhooks"
        assert self.on_reply is not None, "create the Outbox with on_reply= to call webhooks"
        on_reply = self.on_reply
        longest = call.timeout * (WEBHOOK_RETRIES + 1) + 10.0  # the tries and their pauses
        if longest > self.lease * 0.5:
            await claim.extend_lease(longest * 2)
        reply = await call_webhook(self.webhooks, call, sleep=self.sleep)
        log.info(
            "webhook_call.done",
            outbox_id=claim.row.id,
            conversation_id=claim.row.conversation_id,
            ok=reply.ok,
            status=reply.status,
            error=reply.error,
        )
        outcome = {"ok": reply.ok, "status": reply.status, "error": reply.error}

        async def settle() -> bool:
            async with self.store.transaction() as tx:
                if not await claim.mark_sent_in(tx, outcome):
                    return False
                await on_reply(tx, claim.row, reply)
                return True

        await self._settle(claim, settle)
        self.wake()

    async def _give_up(self, claim: Claim, action: Action, error: str) -> None:
        handoff = None
        if not isinstance(action, Handoff):
            handoff = encode(
                Handoff(f"delivery failed: {error[:200]}", getattr(action, "block", ""))
            )
        cancelled = await self._settle(claim, lambda: claim.give_up(error=error, handoff=handoff))
        log.error(
            "outbox.dead",
            outbox_id=claim.row.id,
            account_id=claim.row.account_id,
            conversation_id=claim.row.conversation_id,
            action=claim.row.action.get("type"),
            error=error,
            cancelled=len(cancelled),
            handed_off=handoff is not None,
        )
        if handoff is not None:
            self.wake()

    async def _with_retries(
        self, client: ChatwootClient, claim: Claim, action: Action, attempt: _Attempt
    ) -> dict[str, Any]:
        policy = self.policy
        row = claim.row
        retrying = AsyncRetrying(
            # Chatwoot unreachable: the row waits out a backoff outside its lease instead (a
            # probe notices Chatwoot's return), so a crash meanwhile leaves nothing leased.
            retry=retry_if_exception(
                lambda exc: isinstance(exc, ChatwootUnavailable) and not exc.unreachable
            ),
            stop=stop_after_attempt(policy.in_process_attempts)
            | stop_after_delay(policy.in_process_seconds),
            wait=wait_random_exponential(max=policy.in_process_wait_max),
            sleep=self.sleep,
            reraise=True,
        )
        async for try_ in retrying:
            with try_:
                if attempt.unsure:
                    found = await self._already_sent(client, claim, action)
                    attempt.unsure = False
                    if found is not None:
                        attempt.found = True
                        return found
                try:
                    return await carry_out(
                        client,
                        row.account_id,
                        row.conversation_id,
                        action,
                        row.channel,
                        _opt_int(row.action.get("contact_id")),
                        row.action.get("template_params"),
                    )
                except ChatwootUnavailable as exc:
                    attempt.unsure = exc.maybe_done and _creates_message(action)
                    raise
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _already_sent(
        self, client: ChatwootClient, claim: Claim, action: Action
    ) -> dict[str, Any] | None:
        """After an attempt of unknown outcome: the message Chatwoot shows as this action's,
        or None to send it (again). Chatwoot's create-message call has no idempotency key, so
        the conversation's newest message is the only record to go by: it is this action's
        when it is the bot's outgoing message with this content and newer than any message the
        bot is known to have sent there."""
        row = claim.row
        try:
            last = await client.last_message(row.account_id, row.conversation_id)
        except ChatwootRejected as exc:
            log.warning(
                "outbox.outcome_unknown",
                outbox_id=row.id,
                conversation_id=row.conversation_id,
                reason=f"cannot read the conversation: {exc}",
                message="sending again: the customer may see this message twice",
            )
            return None
        if last is None:
            return None
        known = await claim.last_known_message()
        newest = last.get("id")
        matches = (
            isinstance(newest, int)
            and (known is None or newest > known)
            and last.get("message_type") in (OUTGOING, TEMPLATE)
            and _same_text(last.get("content"), _last_content(action, row.channel))
        )
        log.info(
            "outbox.outcome_checked",
            outbox_id=row.id,
            conversation_id=row.conversation_id,
            delivered=matches,
            message_id=newest,
        )
        return dict(last) if matches else None


T = TypeVar("T")
OUTGOING, TEMPLATE = 1, 3  # `message_type` in Chatwoot's REST answers


@dataclass(frozen=True, slots=True)
class Sent:
    """A claim Chatwoot carried out, waiting to be recorded with others."""

    claim: Claim
    result: dict[str, Any]
    found: bool


@dataclass(slots=True)
class _Attempt:
    """What one delivery attempt knows: whether Chatwoot may already have acted on this row,
    and whether the check found that it had."""

    unsure: bool
    found: bool = False


def _creates_message(action: Action) -> bool:
    """Repeating these would show the customer (or the agents) a message twice; the other
    actions are idempotent in Chatwoot (labels merged, status, assignment, attributes)."""
    return isinstance(action, SendText | SendOptions | PrivateNote)


def _last_content(action: Action, channel: str | None) -> str | None:
    """The content of the last message `carry_out` creates for this action."""
    match action:
        case SendText(text=text) | PrivateNote(text=text):
            return str(channels.text_body(text).get("content"))
        case SendOptions(text=text, options=options):
            pairs = [(o.title, o.value) for o in options]
            bodies = list(channels.messages(channel, text, pairs))
            return str(bodies[-1].get("content")) if bodies else None
        case _:
            return None


def _same_text(shown: object, sent: str | None) -> bool:
    return isinstance(shown, str) and sent is not None and shown.strip() == sent.strip()


WEBHOOK_RETRIES = 2  # at most 2 quick retries, for idempotent calls only
MAX_WEBHOOK_ANSWER = 256 * 1024  # bytes of a flow webhook's answer read at most


async def call_webhook(
    http: httpx.AsyncClient,
    call: CallWebhook,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> WebhookReply:
    """One external call as the flow describes it; the outcome as data, never an exception."""
    tries = 1 + (WEBHOOK_RETRIES if call.retry else 0)
    reply = WebhookReply(call.block, ok=False, status=None, data=None, error="not called")
    try:
        # Header values are sent as UTF-8 (a contact named José); a line break never gets
        # this far (the engine folds it), and h11 refuses any other control character.
        headers = {k.encode("ascii"): v.encode("utf-8") for k, v in call.headers.items()}
        body = None if call.body is None else json.dumps(call.body, allow_nan=False).encode()
    except ValueError as exc:
        return WebhookReply(call.block, False, None, None, f"request not sent: {exc}")
    if body is not None:
        headers.setdefault(b"content-type", b"application/json")
    for attempt in range(tries):
        if attempt:
            await sleep(0.2 * attempt)
        try:
            async with http.stream(
                call.method, call.url, headers=headers, content=body, timeout=call.timeout
            ) as response:
                raw = await _read_capped(response, MAX_WEBHOOK_ANSWER)
        except httpx.TimeoutException:
            reply = WebhookReply(call.block, False, None, None, f"timed out after {call.timeout} s")
            continue
        except (httpx.HTTPError, ValueError) as exc:
            # ValueError: a header or URL httpx cannot send (a flow's variable put it there).
            reply = WebhookReply(call.block, False, None, None, f"request failed: {exc!r}")
            continue
        if raw is None:
            error = f"the answer is larger than {MAX_WEBHOOK_ANSWER} bytes"
            return WebhookReply(call.block, False, response.status_code, None, error)
        data, problem = _answer(raw, response.encoding or "utf-8")
        if problem is not None:
            # Retrying would get the same answer: the flow takes its error path now.
            return WebhookReply(call.block, False, response.status_code, None, problem)
        if response.status_code >= 400:
            error = f"answered {response.status_code}"
            reply = WebhookReply(call.block, False, response.status_code, data, error)
            continue
        return WebhookReply(call.block, True, response.status_code, data)
    return reply


async def _read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The answer's body, or None when it is larger than `limit` (reading stops there)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


def _answer(raw: bytes, encoding: str) -> tuple[Any, str | None]:
    """The answer as JSON fit to store, else as text; or what makes it unfit."""
    try:
        return jsonsafe.loads(raw), None
    except jsonsafe.NotJson:
        pass
    except jsonsafe.Unfit as exc:
        return None, f"the answer cannot be stored: {exc}"
    try:
        text = raw.decode(encoding, errors="replace")
    except LookupError:
        text = raw.decode("utf-8", errors="replace")
    return clean_text(text), None


async def carry_out(
    client: ChatwootClient,
    account_id: int,
    conversation_id: int,
    action: Action,
    channel: str | None = None,
    contact_id: int | None = None,
    template_params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One action, as Chatwoot's API wants it."""
    if template_params is not None and isinstance(action, SendText | SendOptions):
        # Outside WhatsApp's 24-hour window only an approved template goes through.
        body = {**channels.text_body(action.text), "template_params": dict(template_params)}
        return await client.create_message(account_id, conversation_id, body)
    match action:
        case SendText(text=text):
            return await client.create_message(
                account_id, conversation_id, channels.text_body(text)
            )
        case SendOptions(text=text, options=options):
            pairs = [(o.title, o.value) for o in options]
            first: dict[str, Any] | None = None
            for body in channels.messages(channel, text, pairs):
                answer = await client.create_message(account_id, conversation_id, body)
                first = answer if first is None else first
            assert first is not None
            return first
        case AddLabels(labels=labels):
            # Chatwoot's POST replaces the set: add ours to what agents already put there.
            current = await client.labels(account_id, conversation_id)
            wanted = current + [label for label in labels if label not in current]
            if wanted == current:
                return {"labels": current}
            return {"labels": await client.set_labels(account_id, conversation_id, wanted)}
        case Handoff():
            return await client.toggle_status(account_id, conversation_id, "open")
        case Resolve():
            return await client.toggle_status(account_id, conversation_id, "resolved")
        case BackToBot():
            return await client.toggle_status(account_id, conversation_id, "pending")
        case Assign(team_id=team_id, assignee_id=assignee_id):
            # Chatwoot takes one of the two per call; the team first, so that assigning the
            # agent is the last word.
            result: dict[str, Any] = {}
            if team_id is not None:
                result = await client.assign(account_id, conversation_id, {"team_id": team_id})
            if assignee_id is not None:
                body = {"assignee_id": assignee_id}
                result = await client.assign(account_id, conversation_id, body)
            return result
        case PrivateNote(text=text):
            note = {**channels.text_body(text), "private": True}
            return await client.create_message(account_id, conversation_id, note)
        case SaveAttribute(scope="conversation", key=key, value=value):
            # Chatwoot's POST replaces the whole hash: merge with what is there.
            attributes = await client.conversation_attributes(account_id, conversation_id)
            merged = {**attributes, key: value}
            return await client.set_conversation_attributes(account_id, conversation_id, merged)
        case SaveAttribute(scope="contact", key=key, value=value):
            if contact_id is None:
                raise ChatwootRejected(0, "no contact id", method="PATCH", path="/contacts/?")
            return await client.update_contact(account_id, contact_id, {key: value})
        case SaveAttribute() | CallWebhook():
            raise ValueError(f"not a Chatwoot action: {action!r}")
        case _:
            assert_never(action)
