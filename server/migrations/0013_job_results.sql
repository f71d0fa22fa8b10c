-- pipe server schema: test, coverage and benchmark results of a job (issue 17). One row per
-- attempt: the `results` record `pipe run --summary` wrote for the job's legs (the job
-- `reports:` key), sent by the agent with the attempt's job token before it reports the result.
CREATE TABLE web_job_results (
    job_id    bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt   integer NOT NULL,
    results   jsonb NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
