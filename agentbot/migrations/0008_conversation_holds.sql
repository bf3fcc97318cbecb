-- Who holds a conversation apart from its latest session (agentbot/lifecycle.py): humans who took
-- it with no flow running, a snooze that stopped a flow's timers, a snoozed flow the customer
-- woke, an agent's pause of the bot, or the rest after a completed flow (a courtesy reply gets
-- no answer). At most one per conversation; no row: nothing holds it.
create table workflow_holds (
    account_id bigint not null,
    conversation_id bigint not null,
    kind text not null check (kind in ('humans', 'snoozed', 'resuming', 'paused', 'resting')),
    until timestamptz,
    updated_at timestamptz not null default now(),
    primary key (account_id, conversation_id)
);
