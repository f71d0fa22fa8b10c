-- pipe server schema, version 1.
CREATE TABLE tokens (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('agent', 'user')),
    name        text NOT NULL,
    hash        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE runs (
    id             bigserial PRIMARY KEY,
    request_id     text UNIQUE,
    workflow_path  text NOT NULL,
    workflow       text NOT NULL,
    event          text NOT NULL,
    repo           text,
    sha            text,
    git_ref        text,
    secrets        jsonb NOT NULL DEFAULT '{}',
    state          text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done')),
    conclusion     text,
    jobs_remaining integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);

CREATE TABLE jobs (
    id               bigserial PRIMARY KEY,
    run_id           bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    job_key          text NOT NULL,
    position         integer NOT NULL,
    needs            text[] NOT NULL DEFAULT '{}',
    labels           jsonb NOT NULL DEFAULT '[]',
    state            text NOT NULL CHECK (state IN ('blocked', 'queued', 'leased', 'done')),
    pending_deps     integer NOT NULL,
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3,
    lease_owner      text,
    lease_expires_at timestamptz,
    lease_token_hash text,
    cancel_requested boolean NOT NULL DEFAULT false,
    result           text,
    outputs          jsonb,
    accepted_attempt integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    queued_at        timestamptz,
    finished_at      timestamptz,
    UNIQUE (run_id, job_key)
) WITH (fillfactor = 70);

CREATE INDEX jobs_queued ON jobs (id) WHERE state = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX jobs_run_needs ON jobs USING gin (needs);

-- One row per attempt: who ran it and how it ended.
CREATE TABLE attempts (
    job_id      bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    agent       text NOT NULL,
    outcome     text NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'accepted', 'lost')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    PRIMARY KEY (job_id, attempt)
);

-- Log chunks, keyed by their byte offset in the attempt's log: appending the same chunk twice
-- (a retry) stores it once.
CREATE TABLE log_chunks (
    job_id   bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt  integer NOT NULL,
    "offset" bigint NOT NULL,
    data     text NOT NULL,
    PRIMARY KEY (job_id, attempt, "offset")
);
