-- pipe server schema: the web UI's step summaries (issue 17). One row per attempt, written by
-- the agent with the attempt's job token before it reports the result.
CREATE TABLE web_step_summaries (
    job_id    bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt   integer NOT NULL,
    markdown  text NOT NULL,
    PRIMARY KEY (job_id, attempt)
);

-- The runs list reads the newest runs first.
CREATE INDEX IF NOT EXISTS web_runs_created ON runs (created_at DESC);
