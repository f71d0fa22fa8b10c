-- pipe server schema, version 11 (issue 16): artifacts and the step/action cache through the
-- server. Blob contents live on the server's disk by SHA-256 (`blobs/sha256/ab/abcd…`); these
-- tables hold what refers to them.

CREATE TABLE blobs (
    digest     text PRIMARY KEY,
    size       bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A run's artifacts, by name (unique per run, as in GitHub's v4 artifacts). A later attempt of
-- the job that uploaded one replaces it.
CREATE TABLE artifacts (
    id         bigserial PRIMARY KEY,
    run_id     bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name       text NOT NULL,
    job_id     bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt    integer NOT NULL,
    info       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, name)
);

CREATE TABLE artifact_files (
    artifact_id bigint NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    path        text NOT NULL,
    digest      text NOT NULL REFERENCES blobs (digest),
    size        bigint NOT NULL,
    mode        integer NOT NULL,
    PRIMARY KEY (artifact_id, path)
);
CREATE INDEX artifact_files_digest ON artifact_files (digest);

-- The action cache (Bazel HTTP protocol `/ac/<sha256>`): an entry key's manifest, per scope
-- (the run's repository), stored as a blob.
CREATE TABLE cache_ac (
    scope      text NOT NULL,
    digest     text NOT NULL,
    blob       text NOT NULL REFERENCES blobs (digest),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, digest)
);
