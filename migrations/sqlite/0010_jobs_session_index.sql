-- Claiming a job checks that no other job of its session is running.
CREATE INDEX jobs_session ON jobs (session_id, locked_until);
