-- Bursts (a flow's `debounce:`): customer messages held, committed at once, until the
-- conversation has been quiet for the flow's window; then the timers answer them as one.
create table workflow_bursts (
    account_id bigint not null,
    conversation_id bigint not null,
    -- the webhook payloads of the held messages, oldest first
    events jsonb not null default '[]',
    first_at timestamptz not null,
    -- when the window closes: each new message of the burst moves it on
    due_at timestamptz not null,
    primary key (account_id, conversation_id)
);
create index workflow_bursts_due on workflow_bursts (due_at);
