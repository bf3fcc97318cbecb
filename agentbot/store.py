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
# conversation. The row lock is held while a head is delivered: a worker that dies releases it
# with its connection, and SKIP LOCKED lets other workers take other conversations meanwhile.
_HEADS = """
select o.id, o.account_id, o.conversation_id, o.session_id, o.channel, o.action, o.attempts,
    o.created_at
from workflow_outbox o
where o.status = 'pending'
  and not exists (
    select 1 from workflow_outbox p
    where p.status = 'pending' and p.account_id = o.account_id
      and p.conversation_id = o.conversation_id and p.id < o.id
  )
"""
CLAIM_OUTBOX = (
    _HEADS
    + """  and o.next_attempt_at <= now()
order by o.next_attempt_at, o.id
limit 1
for update of o skip locked
"""
)
# A probe: the head that waits longest on an outage, due or not. When it goes through,
# Chatwoot is back and everything waiting is made due at once (WAKE_WAITING).
CLAIM_PROBE = (
    _HEADS
    + """  and o.outage
order by o.next_attempt_at, o.id
limit 1
for update of o skip locked
"""
)
MARK_SENT = """
update workflow_outbox
set status = 'sent', result = %(result)s, attempts = attempts + 1, last_error = null,
    outage = false, finished_at = now()
where id = %(id)s
"""
RECORD_DELIVERY = """
update workflow_interactions set message_id = %(message_id)s where outbox_id = %(id)s
"""
RESCHEDULE = """
update workflow_outbox
set attempts = attempts + 1, last_error = %(error)s, outage = %(outage)s,
    next_attempt_at = now() + make_interval(secs => %(delay)s)
where id = %(id)s
"""
# After a success, whatever waited on Chatwoot being away is due again at once.
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
set status = 'dead', attempts = attempts + 1, last_error = %(error)s, finished_at = now()
where id = %(id)s
returning session_id
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

    async def record_event(
        self,
        *,
        delivery_id: str | None,
        dedupe_key: str | None,
        event: str,
        account_id: int,
        conversation_id: int,
    ) -> bool:
        """False when this delivery or this message was already taken in."""
        cur = await self.conn.execute(
            INSERT_EVENT,
            {
                "delivery_id": delivery_id,
                "dedupe_key": dedupe_key,
                "event": event,
                "account_id": account_id,
                "conversation_id": conversation_id,
            },
        )
        return await cur.fetchone() is not None

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
            async with self.pool.connection() as conn, conn.transaction():
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

    @asynccontextmanager
    async def claim(self, *, probe: bool = False) -> AsyncIterator[Claim | None]:
        """Lock the due head of one conversation's queue for as long as the block runs.

        A conversation's next row is not a head while the one before it is pending, so one
        conversation's actions are carried out one at a time and in order, by any worker.
        With `probe`, take the head waiting longest after a failure, even if not due yet.
        """
        try:
            async with self.pool.connection() as conn, conn.transaction():
                async with conn.cursor(row_factory=class_row(OutboxRow)) as cur:
                    await cur.execute(CLAIM_PROBE if probe else CLAIM_OUTBOX)
                    row = await cur.fetchone()
                yield None if row is None else Claim(Tx(conn), row)
        except psycopg.Error as exc:
            raise StoreError(f"database error: {exc}") from exc
        except TimeoutError as exc:
            raise StoreError(f"database unreachable: {exc}") from exc


class Claim:
    """One outbox row, locked in an open transaction until it is settled."""

    def __init__(self, tx: Tx, row: OutboxRow) -> None:
        self.tx = tx
        self.row = row

    async def mark_sent(self, result: Mapping[str, Any]) -> None:
        conn = self.tx.conn
        await conn.execute(MARK_SENT, {"id": self.row.id, "result": Jsonb(dict(result))})
        message_id = result.get("id")
        if isinstance(message_id, int):
            await conn.execute(RECORD_DELIVERY, {"id": self.row.id, "message_id": message_id})
        await conn.execute(WAKE_WAITING)

    async def reschedule(self, *, delay: float, error: str, outage: bool = False) -> None:
        await self.tx.conn.execute(
            RESCHEDULE, {"id": self.row.id, "delay": delay, "error": error, "outage": outage}
        )

    async def give_up(
        self, *, error: str, handoff: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Dead-letter the row; with `handoff`, cancel what followed it and queue the handoff.

        Returns the cancelled actions.
        """
        row, tx = self.row, self.tx
        await tx.lock_conversation(row.account_id, row.conversation_id)
        await tx.conn.execute(MARK_DEAD, {"id": row.id, "error": error})
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
