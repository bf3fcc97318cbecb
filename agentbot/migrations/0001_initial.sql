-- agentbot's tables. Names of the workflow_* tables come from the system agentbot replaces.

-- Every version of every flow; exactly one current version per name.
create table workflow_configs (
    id bigserial primary key,
    name text not null,
    version text not null,
    title text not null,
    -- json, not jsonb: the blocks' order is meaningful (the first block is the default start).
    definition json not null,
    source text not null check (source in ('file', 'api')),
    is_current boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (name, version)
);
create unique index workflow_configs_current on workflow_configs (name) where is_current;

-- One row per bot session; a Chatwoot conversation may have several over time.
create table workflow_conversations (
    id bigserial primary key,
    account_id bigint not null,
    conversation_id bigint not null,
    contact_id bigint,
    inbox_id bigint,
    channel text,
    flow_name text not null,
    flow_version text not null,
    current_block text not null,
    variables jsonb not null default '{}',
    -- closed: Chatwoot resolved the conversation (or set it pending again) after the bot's part.
    status text not null
        check (status in ('active', 'completed', 'handed_off', 'abandoned', 'closed')),
    misses integer not null default 0,
    waiting text not null default 'nothing',
    timeout_at timestamptz,
    inactive_at timestamptz,
    context jsonb not null default '{}',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    ended_at timestamptz
);
-- The latest session of a conversation.
create index workflow_conversations_latest
    on workflow_conversations (account_id, conversation_id, id desc);
create index workflow_conversations_flow on workflow_conversations (flow_name, status);
-- The timers' poll: active sessions with a deadline.
create index workflow_conversations_timeout on workflow_conversations (timeout_at)
    where status = 'active' and timeout_at is not null;
create index workflow_conversations_inactive on workflow_conversations (inactive_at)
    where status = 'active' and inactive_at is not null;

-- The history: one row per inbound event acted on and per outbound action.
create table workflow_interactions (
    id bigserial primary key,
    session_id bigint references workflow_conversations (id),
    account_id bigint not null,
    conversation_id bigint not null,
    direction text not null check (direction in ('in', 'out')),
    kind text not null,
    block text,
    content text,
    choice text,
    labels jsonb,
    message_id bigint,
    outbox_id bigint,
    error text,
    created_at timestamptz not null default now()
);
create index workflow_interactions_conversation
    on workflow_interactions (account_id, conversation_id, id);
create index workflow_interactions_session on workflow_interactions (session_id);
create index workflow_interactions_message on workflow_interactions (account_id, message_id)
    where message_id is not null;

-- Intake: each Chatwoot delivery and each customer message is acted on once.
create table workflow_events (
    id bigserial primary key,
    delivery_id text,
    dedupe_key text,
    event text not null,
    account_id bigint not null,
    conversation_id bigint not null,
    received_at timestamptz not null default now()
);
create unique index workflow_events_delivery on workflow_events (delivery_id)
    where delivery_id is not null;
create unique index workflow_events_dedupe on workflow_events (account_id, dedupe_key)
    where dedupe_key is not null;

-- The outbox: actions decided, waiting to be carried out, in order per conversation.
create table workflow_outbox (
    id bigserial primary key,
    account_id bigint not null,
    conversation_id bigint not null,
    session_id bigint references workflow_conversations (id),
    channel text,
    action jsonb not null,
    status text not null default 'pending'
        check (status in ('pending', 'sent', 'dead', 'cancelled')),
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error text,
    -- waiting because Chatwoot was away (not a Retry-After or the flood guard): a probe may try
    -- it early, and any success makes it due at once.
    outage boolean not null default false,
    result jsonb,
    created_at timestamptz not null default now(),
    finished_at timestamptz
);
-- A conversation's earlier pending rows (only a queue's head is delivered) ...
create index workflow_outbox_pending on workflow_outbox (account_id, conversation_id, id)
    where status = 'pending';
-- ... and the due rows, in the order they are claimed.
create index workflow_outbox_due on workflow_outbox (next_attempt_at, id)
    where status = 'pending';

-- Generated values kept across restarts (the webhook token, the API token).
create table agentbot_settings (
    key text primary key,
    value text not null,
    created_at timestamptz not null default now()
);
