-- Foreign keys from the rows every trigger writes to the few rows every trigger shares.
--
-- A foreign-key check takes a KEY SHARE lock on the parent row. A workspace, its bots, their
-- connections, its statuses and the people who assign work are parents of every task, session,
-- outbox row and audit record, so the group commit's writers lock the same handful of rows in
-- every batch: each lock is a WAL record, and two writers' locks on one row make a MultiXact.
-- These parents are never deleted (users are disabled or soft-deleted; workspaces, statuses and
-- connections are kept), and the use cases that write these references read the parent first in
-- the same transaction, so the checks guard nothing the code does not. The keys between a
-- trigger's own rows (a session's task, a job's or delivery's session, an attempt's delivery)
-- stay. SQLite keeps every key: its one writer has no one to share locks with.
ALTER TABLE tasks DROP CONSTRAINT tasks_workspace_id_fkey;
ALTER TABLE tasks DROP CONSTRAINT tasks_status_id_fkey;
ALTER TABLE tasks DROP CONSTRAINT tasks_assignee_id_fkey;
ALTER TABLE tasks DROP CONSTRAINT tasks_created_by_fkey;
ALTER TABLE task_events DROP CONSTRAINT task_events_actor_id_fkey;
ALTER TABLE agent_sessions DROP CONSTRAINT agent_sessions_workspace_id_fkey;
ALTER TABLE agent_sessions DROP CONSTRAINT agent_sessions_bot_id_fkey;
ALTER TABLE agent_sessions DROP CONSTRAINT agent_sessions_connection_id_fkey;
ALTER TABLE agent_sessions DROP CONSTRAINT agent_sessions_trigger_actor_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_workspace_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_connection_id_fkey;
