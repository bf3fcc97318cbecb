"""All of agentbot's SQL, over one psycopg connection pool.

Statements are module-level constants with `%(name)s` parameters; JSON goes in through `Jsonb`;
rows come out as frozen dataclasses. psycopg errors are wrapped in `StoreError` here, at the edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Json, Jsonb
from psycopg_pool import AsyncConnectionPool

from agentbot.errors import DataRefused, StoreError

INSERT_EVENT = """
insert into workflow_events (delivery_id, dedupe_key, event, account_id, conversation_id)
values (%(delivery_id)s, %(dedupe_key)s, %(event)s, %(account_id)s, %(conversation_id)s)
on conflict do nothing
returning id
"""
# One lock per Chatwoot conversation, held until the event's transaction ends. An advisory lock
# needs no row to exist yet, which the first message of a conversation has not.
LOCK_CONVERSATION = """
select pg_advisory_xact_lock(
    hashtextextended(%(account_id)s::text || ':' || %(conversation_id)s::text, 0)
)
"""
SESSION_COLUMNS = """
id, account_id, conversation_id, contact_id, inbox_id, channel, flow_name, flow_version,
current_block, variables, status, misses, waiting, timeout_at, inactive_at, context, created_at,
updated_at
"""
SELECT_LATEST_SESSION = f"""
select {SESSION_COLUMNS} from workflow_conversations
where account_id = %(account_id)s and conversation_id = %(conversation_id)s
order by id desc limit 1
"""
INSERT_SESSION = """
insert into workflow_conversations (account_id, conversation_id, contact_id, inbox_id, channel,
    flow_name, flow_version, current_block, variables, status, misses, waiting, timeout_at,
    inactive_at, context, ended_at)
values (%(account_id)s, %(conversation_id)s, %(contact_id)s, %(inbox_id)s, %(channel)s,
    %(flow_name)s, %(flow_version)s, %(current_block)s, %(variables)s, %(status)s, %(misses)s,
    %(waiting)s, %(timeout_at)s, %(inactive_at)s, %(context)s,
    case when %(status)s = 'active' then null else now() end)
returning id
"""
UPDATE_SESSION = """
update workflow_conversations
set current_block = %(current_block)s, variables = %(variables)s, status = %(status)s,
    misses = %(misses)s, waiting = %(waiting)s, timeout_at = %(timeout_at)s,
    inactive_at = %(inactive_at)s, context = %(context)s, updated_at = now(),
    ended_at = case when %(status)s = 'active' then null else coalesce(ended_at, now()) end
where id = %(id)s
"""
# Sessions whose block timeout or inactivity deadline has passed, oldest first. The timers
# lock each conversation and re-read its session before firing, so this needs no lock.
SELECT_DUE_TIMERS = """
select account_id, conversation_id from workflow_conversations
where status = 'active' and timeout_at <= %(now)s
union
select account_id, conversation_id from workflow_conversations
where status = 'active' and inactive_at <= %(now)s
limit %(limit)s
"""
INSERT_INTERACTION = """
insert into workflow_interactions (session_id, account_id, conversation_id, direction, kind, block,
    content, choice, labels, message_id, outbox_id, error)
values (%(session_id)s, %(account_id)s, %(conversation_id)s, %(direction)s, %(kind)s, %(block)s,
    %(content)s, %(choice)s, %(labels)s, %(message_id)s, %(outbox_id)s, %(error)s)
"""
INSERT_OUTBOX = """
insert into workflow_outbox (account_id, conversation_id, session_id, channel, action)
values (%(account_id)s, %(conversation_id)s, %(session_id)s, %(channel)s, %(action)s)
returning id
"""
QUEUE_ACTION = """
with queued as (
    insert into workflow_outbox (account_id, conversation_id, session_id, channel, action)
    values (%(account_id)s, %(conversation_id)s, %(session_id)s, %(channel)s, %(action)s)
    returning id
)
insert into workflow_interactions (session_id, account_id, conversation_id, direction, kind,
    block, content, labels, outbox_id)
select %(session_id)s, %(account_id)s, %(conversation_id)s, 'out', %(kind)s, %(block)s,
    %(content)s, %(labels)s, queued.id
from queued
"""
SET_SESSION_STATUS = """
update workflow_conversations
set status = %(status)s, updated_at = now(), ended_at = coalesce(ended_at, now())
where id = %(id)s
"""
SELECT_SENT_MESSAGE = """
select id, session_id, block, kind from workflow_interactions
where account_id = %(account_id)s and message_id = %(message_id)s and direction = 'out'
order by id desc limit 1
"""
RECORD_ERROR = "update workflow_interactions set error = %(error)s where id = %(id)s"
# Bursts (a flow's `debounce`): hold a customer message until the window closes. A message that
# joins a burst moves its deadline on; the timers answer it once the conversation is quiet.
HOLD_MESSAGE = """
insert into workflow_bursts (account_id, conversation_id, events, first_at, due_at)
values (%(account_id)s, %(conversation_id)s, jsonb_build_array(%(payload)s::jsonb), %(now)s,
    %(due_at)s)
on conflict (account_id, conversation_id) do update
set events = workflow_bursts.events || excluded.events,
    due_at = greatest(workflow_bursts.due_at, excluded.due_at)
"""
SELECT_BURST = """
select 1 from workflow_bursts
where account_id = %(account_id)s and conversation_id = %(conversation_id)s
"""
# Taken under the conversation's lock, in the transaction that answers it: answered once, and a
# crash before the commit leaves it held.
TAKE_BURST = """
delete from workflow_bursts
where account_id = %(account_id)s and conversation_id = %(conversation_id)s
  and due_at <= %(now)s
returning events
"""
DROP_BURST = """
delete from workflow_bursts
where account_id = %(account_id)s and conversation_id = %(conversation_id)s
returning 1
"""
SELECT_DUE_BURSTS = """
select account_id, conversation_id from workflow_bursts where due_at <= %(now)s
order by due_at limit %(limit)s
"""
# Heads of conversations' queues: pending rows with no earlier pending row of their
# conversation. Claiming records the attempt in one short statement before Chatwoot is called:
# it counts the attempt (the fence of the settlement), leases the row by moving next_attempt_at
# past the attempt's end, and notes when an attempt of unknown outcome began. No transaction
# stays open across the HTTP call; a worker that dies leaves the row to be taken again once its
# lease has run out, with attempt_at telling the next worker to ask Chatwoot first.
_HEADS = """
select o.id, o.attempt_at from workflow_outbox o
where o.status = 'pending'
  and not exists (
    select 1 from workflow_outbox p
    where p.status = 'pending' and p.account_id = o.account_id
      and p.conversation_id = o.conversation_id and p.id < o.id
  )
"""
_TAKE = """
update workflow_outbox o
set attempts = o.attempts + 1, outage = false,
    next_attempt_at = now() + make_interval(secs => %(lease)s),
    attempt_at = coalesce(o.attempt_at, now())
from heads h
where o.id = h.id
returning o.id, o.account_id, o.conversation_id, o.session_id, o.channel, o.action, o.attempts,
    o.created_at, h.attempt_at as unsure_since,
    exists (
        select 1 from workflow_outbox n
        where n.status = 'pending' and n.account_id = o.account_id
          and n.conversation_id = o.conversation_id and n.id > o.id
    ) as has_next
"""
CLAIM_OUTBOX = (
    "with heads as ("
    + _HEADS
    + """  and o.next_attempt_at <= now()
order by o.next_attempt_at, o.id
limit %(limit)s
for update of o skip locked
)"""
    + _TAKE
)
# A probe: the head that waits longest on an outage, due or not. When it goes through,
# Chatwoot is back and everything waiting is made due at once (WAKE_WAITING).
CLAIM_PROBE = (
    "with heads as ("
    + _HEADS
    + """  and o.outage
order by o.next_attempt_at, o.id
limit 1
for update of o skip locked
)"""
    + _TAKE
)
# Settlements match the attempt they settle (`attempts`): one whose lease ran out, and that
# another worker took since, changes nothing.
MARK_SENT = """
with done as (
    update workflow_outbox
    set status = 'sent', result = %(result)s, last_error = null, outage = false,
        attempt_at = null, finished_at = now()
    where id = %(id)s and attempts = %(attempts)s and status = 'pending'
    returning id
), delivered as (
    update workflow_interactions i set message_id = %(message_id)s
    from done where i.outbox_id = done.id and %(message_id)s::bigint is not null
    returning 1
)
select count(*) from done
"""
# MARK_SENT for many rows in one statement; the ids of the rows it settled.
MARK_SENT_MANY = """
with given as (
    select * from unnest(%(ids)s::bigint[], %(attempts)s::int[], %(results)s::jsonb[],
        %(message_ids)s::bigint[]) as t(id, attempts, result, message_id)
), done as (
    update workflow_outbox o
    set status = 'sent', result = given.result, last_error = null, outage = false,
        attempt_at = null, finished_at = now()
    from given
    where o.id = given.id and o.attempts = given.attempts and o.status = 'pending'
    returning o.id, given.message_id
), delivered as (
    update workflow_interactions i set message_id = done.message_id
    from done where i.outbox_id = done.id and done.message_id is not null
    returning 1
)
select id from done
"""
# `unknown`: this attempt's outcome is not known, so the row keeps its attempt_at.
# An attempt that may outlast its lease (a flow webhook with a long timeout) holds the row longer,
# so no other worker calls the same webhook meanwhile.
EXTEND_LEASE = """
update workflow_outbox set next_attempt_at = now() + make_interval(secs => %(seconds)s)
where id = %(id)s and attempts = %(attempts)s and status = 'pending'
"""
RESCHEDULE = """
update workflow_outbox
set last_error = %(error)s, outage = %(outage)s,
    next_attempt_at = now() + make_interval(secs => %(delay)s),
    attempt_at = case when %(unknown)s then attempt_at end
where id = %(id)s and attempts = %(attempts)s and status = 'pending'
"""
# After a success, whatever waited on Chatwoot being away is due again at once. A row being
# attempted has outage = false, so its lease is left alone.
WAKE_WAITING = """
update workflow_outbox set next_attempt_at = now()
where id in (
    select id from workflow_outbox
    where status = 'pending' and outage and next_attempt_at > now()
    for update skip locked
)
"""
MARK_DEAD = """
update workflow_outbox
set status = 'dead', last_error = %(error)s, attempt_at = null, finished_at = now()
where id = %(id)s and attempts = %(attempts)s and status = 'pending'
returning session_id
"""
# Before resending after an attempt of unknown outcome: the newest Chatwoot message id the bot
# is known to have created in the conversation.
LAST_KNOWN_MESSAGE = """
select max(message_id) from workflow_interactions
where account_id = %(account_id)s and conversation_id = %(conversation_id)s
  and direction = 'out' and message_id is not null
"""
CANCEL_PENDING = """
update workflow_outbox
set status = 'cancelled', finished_at = now(), last_error = %(reason)s
where account_id = %(account_id)s and conversation_id = %(conversation_id)s
  and status = 'pending' and id > %(after)s
returning action
"""
HAND_OFF_SESSION = """
update workflow_conversations
set status = 'handed_off', updated_at = now(), ended_at = coalesce(ended_at, now())
where id = %(id)s and status = 'active'
"""
SELECT_HOLD = """
select kind, until from workflow_holds
where account_id = %(account_id)s and conversation_id = %(conversation_id)s
"""
UPSERT_HOLD = """
insert into workflow_holds (account_id, conversation_id, kind, until)
values (%(account_id)s, %(conversation_id)s, %(kind)s, %(until)s)
on conflict (account_id, conversation_id)
do update set kind = excluded.kind, until = excluded.until, updated_at = now()
"""
DELETE_HOLD = """
delete from workflow_holds
where account_id = %(account_id)s and conversation_id = %(conversation_id)s
"""
SELECT_CURRENT_FLOWS = """
select name, version, definition from workflow_configs where is_current order by name
"""
SELECT_FLOW_LIST = """
select name, version, title, source, updated_at from workflow_configs
where is_current order by name
"""
SELECT_CURRENT_FLOW = """
select name, version, title, source, updated_at, definition from workflow_configs
where name = %(name)s and is_current
"""
SELECT_FLOW_VERSION = """
select definition from workflow_configs where name = %(name)s and version = %(version)s
"""
UNSET_CURRENT = """
update workflow_configs set is_current = false, updated_at = now()
where name = %(name)s and is_current and version <> %(version)s
"""
UPSERT_FLOW = """
insert into workflow_configs (name, version, title, definition, source, is_current)
values (%(name)s, %(version)s, %(title)s, %(definition)s, %(source)s, true)
on conflict (name, version) do update
set is_current = true, updated_at = now(), source = excluded.source
where not workflow_configs.is_current
returning (xmax = 0) as inserted
"""
LOCK_FLOWS = "select pg_advisory_xact_lock(hashtextextended('agentbot:workflow_configs', 0))"
SELECT_ACCOUNTS = """
select account_id from workflow_events where conversation_id = %(conversation_id)s
union
select account_id from workflow_conversations where conversation_id = %(conversation_id)s
"""
SELECT_INTERACTIONS = """
select id, session_id, direction, kind, block, content, choice, labels, message_id, error,
    created_at
from workflow_interactions
where account_id = %(account_id)s and conversation_id = %(conversation_id)s
  and id < %(before)s
order by id desc limit %(limit)s
"""
RETIRE_FLOW = """
update workflow_configs set is_current = false, updated_at = now()
where name = %(name)s and is_current
returning version
"""
RETIRE_FILE_FLOWS = """
update workflow_configs set is_current = false, updated_at = now()
where is_current and source = 'file' and not (name = any(%(keep)s))
returning name
"""
SELECT_CONTACT_SESSIONS = """
select id as session_id, account_id, conversation_id, inbox_id, flow_name as flow,
    flow_version as version, current_block as block, status, created_at, ended_at
from workflow_conversations where contact_id = %(contact_id)s
order by id desc limit %(limit)s
"""
INSERT_AUDIT = """
insert into agentbot_audit (remote, method, path, action, subject, detail)
values (%(remote)s, %(method)s, %(path)s, %(action)s, %(subject)s, %(detail)s)
"""
SELECT_SETTING = "select value from agentbot_settings where key = %(key)s"
SELECT_SETTINGS = "select key, value from agentbot_settings where key = any(%(keys)s)"
UPSERT_SETTING = """
insert into agentbot_settings (key, value) values (%(key)s, %(value)s)
on conflict (key) do update set value = excluded.value, created_at = now()
"""
INSERT_SETTING = """
insert into agentbot_settings (key, value) values (%(key)s, %(value)s)
on conflict (key) do nothing
"""


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: int
    account_id: int
    conversation_id: int
    contact_id: int | None
    inbox_id: int | None
    channel: str | None
    flow_name: str
    flow_version: str
    current_block: str
    variables: dict[str, Any]
    status: str
    misses: int
    waiting: str
    timeout_at: datetime | None
    inactive_at: datetime | None
    context: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    account_id: int
    conversation_id: int
    session_id: int | None
    channel: str | None
    action: dict[str, Any]
    attempts: int
    created_at: datetime
    # When an earlier attempt of unknown outcome began: Chatwoot may have acted on it already.
    unsure_since: datetime | None = None
    # Whether the conversation has another row waiting behind this one (claimed rows only).
    has_next: bool = False


@dataclass(frozen=True, slots=True)
class SentMessage:
    """The interaction row of a message the bot sent."""

    id: int
    session_id: int | None
    block: str | None
    kind: str


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a step changes in a session row."""

    current_block: str
    variables: Mapping[str, Any]
    status: str
    misses: int
    waiting: str
    timeout_at: datetime | None
    inactive_at: datetime | None
    context: Mapping[str, Any]

    def params(self) -> dict[str, Any]:
        return {
            "current_block": self.current_block,
            "variables": Jsonb(dict(self.variables)),
            "status": self.status,
            "misses": self.misses,
            "waiting": self.waiting,
            "timeout_at": self.timeout_at,
            "inactive_at": self.inactive_at,
            "context": Jsonb(dict(self.context)),
        }


@dataclass(frozen=True, slots=True)
class NewSession:
    account_id: int
    conversation_id: int
    contact_id: int | None
    inbox_id: int | None
    channel: str | None
    flow_name: str
    flow_version: str
    state: SessionState


class Tx:
    """The statements of one event's transaction, on one connection."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def take_in_many(
        self, events: Sequence[Mapping[str, Any]]
    ) -> list[tuple[bool, SessionRow | None]]:
        """Take in several events of distinct conversations, all in one round trip: record
        each (whether it is new), lock its conversation and read its latest session under the
        lock.

        Each mapping has `delivery_id`, `dedupe_key`, `event`, `account_id`, `conversation_id`.
        Conversations are locked in the order given: callers that lock several sort them the
        same way, so that they cannot deadlock.
        """
        pending = []
        for event in events:
            where = {
                "account_id": event["account_id"],
                "conversation_id": event["conversation_id"],
            }
            inserted = await self.conn.execute(
                INSERT_EVENT,
                {
                    "delivery_id": event["delivery_id"],
                    "dedupe_key": event["dedupe_key"],
                    "event": event["event"],
                    **where,
                },
            )
            await self.conn.execute(LOCK_CONVERSATION, where)
            cur = self.conn.cursor(row_factory=class_row(SessionRow))
            await cur.execute(SELECT_LATEST_SESSION, where)
            pending.append((inserted, cur))
        taken = []
        for inserted, cur in pending:
            fresh = await inserted.fetchone() is not None
            taken.append((fresh, await cur.fetchone()))
            await cur.close()
        return taken

    async def lock_conversation(self, account_id: int, conversation_id: int) -> None:
        await self.conn.execute(
            LOCK_CONVERSATION, {"account_id": account_id, "conversation_id": conversation_id}
        )

    async def latest_session(self, account_id: int, conversation_id: int) -> SessionRow | None:
        async with self.conn.cursor(row_factory=class_row(SessionRow)) as cur:
            await cur.execute(
                SELECT_LATEST_SESSION,
                {"account_id": account_id, "conversation_id": conversation_id},
            )
            return await cur.fetchone()

    async def insert_session(self, session: NewSession) -> int:
        cur = await self.conn.execute(
            INSERT_SESSION,
            {
                "account_id": session.account_id,
                "conversation_id": session.conversation_id,
                "contact_id": session.contact_id,
                "inbox_id": session.inbox_id,
                "channel": session.channel,
                "flow_name": session.flow_name,
                "flow_version": session.flow_version,
                **session.state.params(),
            },
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def update_session(self, session_id: int, state: SessionState) -> None:
        await self.conn.execute(UPDATE_SESSION, {"id": session_id, **state.params()})

    async def insert_interaction(
        self,
        *,
        session_id: int | None,
        account_id: int,
        conversation_id: int,
        direction: str,
        kind: str,
        block: str | None = None,
        content: str | None = None,
        choice: str | None = None,
        labels: Sequence[str] | None = None,
        message_id: int | None = None,
        outbox_id: int | None = None,
        error: str | None = None,
    ) -> None:
        await self.conn.execute(
            INSERT_INTERACTION,
            {
                "session_id": session_id,
                "account_id": account_id,
                "conversation_id": conversation_id,
                "direction": direction,
                "kind": kind,
                "block": block,
                "content": content,
                "choice": choice,
                "labels": None if labels is None else Jsonb(list(labels)),
                "message_id": message_id,
                "outbox_id": outbox_id,
                "error": error,
            },
        )

    async def enqueue(
        self,
        *,
        account_id: int,
        conversation_id: int,
        session_id: int | None,
        action: Mapping[str, Any],
        channel: str | None = None,
    ) -> int:
        cur = await self.conn.execute(
            INSERT_OUTBOX,
            {
                "account_id": account_id,
                "conversation_id": conversation_id,
                "session_id": session_id,
                "channel": channel,
                "action": Jsonb(dict(action)),
            },
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def hold_message(
        self,
        account_id: int,
        conversation_id: int,
        payload: Mapping[str, Any],
        now: datetime,
        due_at: datetime,
    ) -> None:
        """Add a customer message (its webhook payload) to the conversation's burst."""
        await self.conn.execute(
            HOLD_MESSAGE,
            {
                "account_id": account_id,
                "conversation_id": conversation_id,
                "payload": Jsonb(dict(payload)),
                "now": now,
                "due_at": due_at,
            },
        )

    async def holds_burst(self, account_id: int, conversation_id: int) -> bool:
        cur = await self.conn.execute(
            SELECT_BURST, {"account_id": account_id, "conversation_id": conversation_id}
        )
        return await cur.fetchone() is not None

    async def take_burst(
        self, account_id: int, conversation_id: int, now: datetime
    ) -> list[Any] | None:
        """The held payloads, oldest first, if the burst's window has closed by `now`."""
        cur = await self.conn.execute(
            TAKE_BURST,
            {"account_id": account_id, "conversation_id": conversation_id, "now": now},
        )
        row = await cur.fetchone()
        return None if row is None else list(row[0])

    async def drop_burst(self, account_id: int, conversation_id: int) -> bool:
        """Forget the conversation's held messages; True when there were any."""
        cur = await self.conn.execute(
            DROP_BURST, {"account_id": account_id, "conversation_id": conversation_id}
        )
        return await cur.fetchone() is not None

    async def queue_action(
        self,
        *,
        account_id: int,
        conversation_id: int,
        session_id: int | None,
        action: Mapping[str, Any],
        channel: str | None,
        kind: str,
        block: str | None,
        content: str | None,
        labels: Sequence[str] | None,
    ) -> None:
        """`enqueue` and the outbound interaction that names its row, in one statement whose
        result is not waited for."""
        await self.conn.execute(
            QUEUE_ACTION,
            {
                "account_id": account_id,
                "conversation_id": conversation_id,
                "session_id": session_id,
                "channel": channel,
                "action": Jsonb(dict(action)),
                "kind": kind,
                "block": block,
                "content": content,
                "labels": None if labels is None else Jsonb(list(labels)),
            },
        )

    async def set_session_status(self, session_id: int, status: str) -> None:
        await self.conn.execute(SET_SESSION_STATUS, {"id": session_id, "status": status})

    async def sent_message(self, account_id: int, message_id: int) -> SentMessage | None:
        async with self.conn.cursor(row_factory=class_row(SentMessage)) as cur:
            await cur.execute(
                SELECT_SENT_MESSAGE, {"account_id": account_id, "message_id": message_id}
            )
            return await cur.fetchone()

    async def record_error(self, interaction_id: int, error: str) -> None:
        await self.conn.execute(RECORD_ERROR, {"id": interaction_id, "error": error})

    async def hold(
        self, account_id: int, conversation_id: int
    ) -> tuple[str, datetime | None] | None:
        """The conversation's hold (lifecycle.Hold's value) and when it ends, if it has one."""
        cur = await self.conn.execute(
            SELECT_HOLD, {"account_id": account_id, "conversation_id": conversation_id}
        )
        row = await cur.fetchone()
        return None if row is None else (str(row[0]), row[1])

    async def set_hold(
        self, account_id: int, conversation_id: int, kind: str | None, until: datetime | None
    ) -> None:
        """Keep the conversation's hold, or drop it (`kind` None)."""
        params = {"account_id": account_id, "conversation_id": conversation_id}
        if kind is None:
            await self.conn.execute(DELETE_HOLD, params)
        else:
            await self.conn.execute(UPSERT_HOLD, {**params, "kind": kind, "until": until})


class Store:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        try:
            # Pipeline mode: a statement whose result is not read goes out with the next one
            # that is (or with the COMMIT), so a transaction costs a round trip per read.
            async with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
                yield Tx(conn)
        except psycopg.DataError as exc:
            raise DataRefused(f"the database refused the data: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"database error: {exc}") from exc
        except TimeoutError as exc:  # the pool found no connection: the database is away
            raise StoreError(f"database unreachable: {exc}") from exc

    async def due_timers(self, now: datetime, limit: int = 100) -> list[tuple[int, int]]:
        """(account, conversation) of active sessions with a deadline at or before `now`."""
        async with self.transaction() as tx:
            cur = await tx.conn.execute(SELECT_DUE_TIMERS, {"now": now, "limit": limit})
            return [(int(a), int(c)) for a, c in await cur.fetchall()]

    async def due_bursts(self, now: datetime, limit: int = 100) -> list[tuple[int, int]]:
        """(account, conversation) of bursts whose window closed at or before `now`."""
        async with self.transaction() as tx:
            cur = await tx.conn.execute(SELECT_DUE_BURSTS, {"now": now, "limit": limit})
            return [(int(a), int(c)) for a, c in await cur.fetchall()]

    async def accounts_of(self, conversation_id: int) -> list[int]:
        """The Chatwoot accounts in which agentbot has seen a conversation with this id."""
        async with self.transaction() as tx:
            cur = await tx.conn.execute(SELECT_ACCOUNTS, {"conversation_id": conversation_id})
            return sorted(int(a) for (a,) in await cur.fetchall())

    async def conversation_view(
        self, account_id: int, conversation_id: int, limit: int = 200, before: int | None = None
    ) -> tuple[SessionRow | None, list[dict[str, Any]]]:
        """The latest session and the newest interactions (oldest first) of a conversation,
        those with an id below `before` when given."""
        async with self.transaction() as tx:
            session = await tx.latest_session(account_id, conversation_id)
            async with tx.conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    SELECT_INTERACTIONS,
                    {
                        "account_id": account_id,
                        "conversation_id": conversation_id,
                        "limit": limit,
                        "before": before if before is not None else 2**63 - 1,
                    },
                )
                rows = await cur.fetchall()
        return session, list(reversed(rows))

    async def metrics_rows(
        self, outbox_query: str, sessions_query: str
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The rows of the two /metrics queries, read in one transaction."""
        async with self.transaction() as tx:
            outbox = await (await tx.conn.execute(outbox_query)).fetchall()
            sessions = await (await tx.conn.execute(sessions_query)).fetchall()
        return outbox, sessions

    async def contact_sessions(self, contact_id: int, limit: int = 200) -> list[dict[str, Any]]:
        async with self.transaction() as tx, tx.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(SELECT_CONTACT_SESSIONS, {"contact_id": contact_id, "limit": limit})
            return await cur.fetchall()

    async def ping(self) -> None:
        async with self.transaction() as tx:
            await tx.conn.execute("select 1")

    # Flows

    async def sync_flow(
        self, *, name: str, version: str, title: str, definition: Mapping[str, Any], source: str
    ) -> bool:
        """Make this content the current version of the flow; True when that changed anything."""
        async with self.transaction() as tx:
            await tx.conn.execute(LOCK_FLOWS)
            await tx.conn.execute(UNSET_CURRENT, {"name": name, "version": version})
            cur = await tx.conn.execute(
                UPSERT_FLOW,
                {
                    "name": name,
                    "version": version,
                    "title": title,
                    "definition": Json(dict(definition)),
                    "source": source,
                },
            )
            return await cur.fetchone() is not None

    async def retire_flow(self, name: str) -> str | None:
        """The flow starts no new session; the version it had, or None when it had none."""
        async with self.transaction() as tx:
            await tx.conn.execute(LOCK_FLOWS)
            cur = await tx.conn.execute(RETIRE_FLOW, {"name": name})
            row = await cur.fetchone()
            return None if row is None else str(row[0])

    async def retire_file_flows(self, keep: Sequence[str]) -> list[str]:
        """Retire the flows read from files whose file is gone (names not in `keep`)."""
        async with self.transaction() as tx:
            await tx.conn.execute(LOCK_FLOWS)
            cur = await tx.conn.execute(RETIRE_FILE_FLOWS, {"keep": list(keep)})
            return sorted(str(n) for (n,) in await cur.fetchall())

    async def audit(
        self,
        *,
        remote: str | None,
        method: str,
        path: str,
        action: str,
        subject: str | None,
        detail: Mapping[str, Any],
    ) -> None:
        async with self.transaction() as tx:
            await tx.conn.execute(
                INSERT_AUDIT,
                {
                    "remote": remote,
                    "method": method,
                    "path": path,
                    "action": action,
                    "subject": subject,
                    "detail": Jsonb(dict(detail)),
                },
            )

    async def current_flows(self) -> list[tuple[str, str, dict[str, Any]]]:
        async with self.transaction() as tx:
            cur = await tx.conn.execute(SELECT_CURRENT_FLOWS)
            return [(n, v, d) for n, v, d in await cur.fetchall()]

    async def flow_list(self) -> list[dict[str, Any]]:
        """The current version of every flow: name, version, title, source, updated_at."""
        async with self.transaction() as tx, tx.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(SELECT_FLOW_LIST)
            return await cur.fetchall()

    async def current_flow(self, name: str) -> dict[str, Any] | None:
        """The flow's current version with its definition, or None."""
        async with self.transaction() as tx, tx.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(SELECT_CURRENT_FLOW, {"name": name})
            return await cur.fetchone()

    async def flow_definition(self, name: str, version: str) -> dict[str, Any] | None:
        async with self.transaction() as tx:
            cur = await tx.conn.execute(SELECT_FLOW_VERSION, {"name": name, "version": version})
            row = await cur.fetchone()
            return None if row is None else dict(row[0])

    # Settings

    async def setting(self, key: str, make: Callable[[], str]) -> tuple[str, bool]:
        """The stored value, or a new one made and stored now; True when it is new."""
        async with self.transaction() as tx:
            cur = await tx.conn.execute(SELECT_SETTING, {"key": key})
            row = await cur.fetchone()
            if row is not None:
                return str(row[0]), False
            value = make()
            await tx.conn.execute(INSERT_SETTING, {"key": key, "value": value})
            cur = await tx.conn.execute(SELECT_SETTING, {"key": key})
            row = await cur.fetchone()
            assert row is not None
            return str(row[0]), str(row[0]) == value

    async def settings(self, *keys: str) -> dict[str, str]:
        """The stored values of these keys (absent keys left out)."""
        async with self.transaction() as tx:
            cur = await tx.conn.execute(SELECT_SETTINGS, {"keys": list(keys)})
            return {str(k): str(v) for k, v in await cur.fetchall()}

    async def replace_setting(self, key: str, value: str) -> None:
        async with self.transaction() as tx:
            await tx.conn.execute(UPSERT_SETTING, {"key": key, "value": value})

    # Outbox

    async def claim(
        self, *, probe: bool = False, limit: int = 1, lease: float = 30.0
    ) -> list[Claim]:
        """Take up to `limit` due heads of conversations' queues, each for `lease` seconds.

        A conversation's next row is not a head while the one before it is pending, so one
        conversation's actions are carried out one at a time and in order, by any worker.
        With `probe`, take the head waiting longest after an outage, even if not due yet.
        The attempt is committed before this returns; no connection is held afterwards.
        """
        params = {"limit": limit, "lease": lease}
        try:
            async with self.pool.connection() as conn:
                async with conn.cursor(row_factory=class_row(OutboxRow)) as cur:
                    await cur.execute(CLAIM_PROBE if probe else CLAIM_OUTBOX, params)
                    rows = await cur.fetchall()
                await conn.commit()
        except psycopg.Error as exc:
            raise StoreError(f"database error: {exc}") from exc
        except TimeoutError as exc:
            raise StoreError(f"database unreachable: {exc}") from exc
        rows.sort(key=lambda r: r.id)
        return [Claim(self, row) for row in rows]

    async def mark_sent_many(
        self, sent: Sequence[tuple[Claim, Mapping[str, Any]]], *, wake: bool = False
    ) -> set[int]:
        """`Claim.mark_sent` for several claims in one statement: the ids it settled."""
        ids, attempts, results, message_ids = [], [], [], []
        for claim, result in sent:
            message_id = result.get("id")
            ids.append(claim.row.id)
            attempts.append(claim.row.attempts)
            results.append(Jsonb(dict(result)))
            message_ids.append(message_id if isinstance(message_id, int) else None)
        params = {
            "ids": ids,
            "attempts": attempts,
            "results": results,
            "message_ids": message_ids,
        }
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(MARK_SENT_MANY, params)
                done = {int(r[0]) for r in await cur.fetchall()}
                if done and wake:
                    await conn.execute(WAKE_WAITING)
                await conn.commit()
        except psycopg.Error as exc:
            raise StoreError(f"database error: {exc}") from exc
        except TimeoutError as exc:
            raise StoreError(f"database unreachable: {exc}") from exc
        return done

    async def _execute(self, statement: str, params: Mapping[str, Any]) -> Any:
        """One statement in its own transaction: its first row's first value, or None."""
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(statement, params)
                row = await cur.fetchone() if cur.description is not None else None
                await conn.commit()
        except psycopg.Error as exc:
            raise StoreError(f"database error: {exc}") from exc
        except TimeoutError as exc:
            raise StoreError(f"database unreachable: {exc}") from exc
        return None if row is None else row[0]


class Claim:
    """One outbox row taken for one attempt. Each settlement is its own short transaction and
    changes nothing when the attempt is no longer the row's latest (its lease ran out)."""

    def __init__(self, store: Store, row: OutboxRow) -> None:
        self.store = store
        self.row = row

    def _fence(self) -> dict[str, Any]:
        return {"id": self.row.id, "attempts": self.row.attempts}

    async def extend_lease(self, seconds: float) -> None:
        """Hold the row `seconds` from now, for an attempt longer than the usual lease."""
        await self.store._execute(EXTEND_LEASE, {**self._fence(), "seconds": seconds})

    async def last_known_message(self) -> int | None:
        """The newest Chatwoot message id recorded for this row's conversation."""
        row = self.row
        value = await self.store._execute(
            LAST_KNOWN_MESSAGE,
            {"account_id": row.account_id, "conversation_id": row.conversation_id},
        )
        return None if value is None else int(value)

    async def mark_sent_in(self, tx: Tx, result: Mapping[str, Any]) -> bool:
        """Record the success inside the caller's transaction (a webhook's answer steps the
        flow in the same transaction); False when the attempt was no longer this worker's."""
        message_id = result.get("id")
        params = {
            **self._fence(),
            "result": Jsonb(dict(result)),
            "message_id": message_id if isinstance(message_id, int) else None,
        }
        cur = await tx.conn.execute(MARK_SENT, params)
        row = await cur.fetchone()
        return bool(row and row[0])

    async def reschedule(
        self, *, delay: float, error: str, outage: bool = False, unknown: bool = False
    ) -> None:
        params = {
            **self._fence(),
            "delay": delay,
            "error": error,
            "outage": outage,
            "unknown": unknown,
        }
        await self.store._execute(RESCHEDULE, params)

    async def give_up(
        self, *, error: str, handoff: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Dead-letter the row; with `handoff`, cancel what followed it and queue the handoff.

        Returns the cancelled actions.
        """
        row = self.row
        async with self.store.transaction() as tx:
            await tx.lock_conversation(row.account_id, row.conversation_id)
            cur = await tx.conn.execute(MARK_DEAD, {**self._fence(), "error": error})
            if await cur.fetchone() is None:
                return []
            await tx.insert_interaction(
                session_id=row.session_id,
                account_id=row.account_id,
                conversation_id=row.conversation_id,
                direction="out",
                kind="failed",
                block=row.action.get("block"),
                outbox_id=row.id,
                error=error,
            )
            if handoff is None:
                return []
            cur = await tx.conn.execute(
                CANCEL_PENDING,
                {
                    "account_id": row.account_id,
                    "conversation_id": row.conversation_id,
                    "after": row.id,
                    "reason": f"cancelled: outbox row {row.id} failed",
                },
            )
            cancelled = [dict(r[0]) for r in await cur.fetchall()]
            if row.session_id is not None:
                await tx.conn.execute(HAND_OFF_SESSION, {"id": row.session_id})
            await tx.enqueue(
                account_id=row.account_id,
                conversation_id=row.conversation_id,
                session_id=row.session_id,
                action=handoff,
                channel=row.channel,
            )
            return cancelled
