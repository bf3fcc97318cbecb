-- An outbox attempt is recorded in its own short transaction before Chatwoot is called; no
-- transaction stays open across the call. While an attempt runs, the row's next_attempt_at is
-- its lease: no other worker takes the row before that, and `attempts` (counted when the
-- attempt starts) fences the settlement, so a worker whose lease ran out settles nothing.
-- attempt_at: when the earliest attempt whose outcome is unknown started (the worker died, the
-- database went away before the outcome was written, or Chatwoot's answer was lost); null when
-- every attempt's outcome is known. The next attempt first asks Chatwoot whether it acted.
alter table workflow_outbox add column attempt_at timestamptz;

-- Settling a row records Chatwoot's message id on the history row that names it: without this
-- index that update read the whole history once per reply.
create index workflow_interactions_outbox on workflow_interactions (outbox_id)
    where outbox_id is not null;
