-- The operators' view: GET /api/stats, the dashboard, the audit of API writes, retention.

-- Sessions by start time (the stats' window; covering, so the stats read no table row), the
-- completed ones with their end (the median time to complete), and a contact's sessions.
create index workflow_conversations_started on workflow_conversations (created_at)
    include (flow_name, status, current_block);
create index workflow_conversations_completed on workflow_conversations (created_at)
    include (flow_name, ended_at) where status = 'completed';
create index workflow_conversations_contact on workflow_conversations (contact_id, id desc)
    where contact_id is not null;

-- The funnel's counts per flow version, day the session started (UTC), block, metric and key,
-- rolled up from workflow_interactions up to the watermark below, so that a year of history
-- is summed from a few thousand rows. metric: entered, answered, failed (an answer refused),
-- choice (key: the recorded value), label (key: the label).
create table workflow_stats_rollup (
    flow_name text not null,
    flow_version text not null,
    day date not null,
    block text not null,
    metric text not null,
    key text not null,
    n bigint not null,
    primary key (day, flow_name, flow_version, block, metric, key)
);
-- The last workflow_interactions id summed into workflow_stats_rollup.
create table workflow_stats_watermark (
    only_row boolean primary key default true check (only_row),
    last_id bigint not null
);
insert into workflow_stats_watermark (last_id) values (0);

-- Every API write: when, from where, what.
create table agentbot_audit (
    id bigserial primary key,
    at timestamptz not null default now(),
    remote text,
    method text not null,
    path text not null,
    action text not null,
    subject text,
    detail jsonb not null default '{}'
);
create index agentbot_audit_at on agentbot_audit (at);

-- Retention: the pruning walks these by age.
create index workflow_events_received on workflow_events (received_at);
create index workflow_outbox_finished on workflow_outbox (finished_at) where status = 'sent';
create index workflow_interactions_created on workflow_interactions (created_at);
