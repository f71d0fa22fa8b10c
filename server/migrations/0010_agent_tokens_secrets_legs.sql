-- pipe server schema, version 10 (issue 16): token revocation, secrets read per job, matrix
-- legs as rows of their own. (Versions 2–9 are left to other migrations of the same release.)

-- Revoked tokens stay listed; a revoked token authenticates nothing.
ALTER TABLE tokens ADD COLUMN revoked_at timestamptz;

-- The agent token a lease was claimed with: revoking it re-queues the lease at once.
ALTER TABLE jobs ADD COLUMN lease_agent_token bigint;

-- The secrets a job reads (upper-case names); all_secrets when it reads every secret.
-- runs.secrets now holds sealed values (`pipe1:…`, XChaCha20-Poly1305 under the server key).
ALTER TABLE jobs ADD COLUMN secret_names text[] NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN all_secrets boolean NOT NULL DEFAULT true;

-- One row per matrix leg: its job-index, display name, the `--matrix` filters selecting it,
-- and whether a failed leg cancels its siblings.
ALTER TABLE jobs ADD COLUMN leg integer;
ALTER TABLE jobs ADD COLUMN name text;
ALTER TABLE jobs ADD COLUMN matrix jsonb NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN fail_fast boolean NOT NULL DEFAULT false;
ALTER TABLE jobs DROP CONSTRAINT jobs_run_id_job_key_key;
CREATE UNIQUE INDEX jobs_run_key_leg ON jobs (run_id, job_key, coalesce(leg, -1));
CREATE INDEX jobs_run_key ON jobs (run_id, job_key);
