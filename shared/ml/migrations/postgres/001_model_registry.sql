-- The model registry (shared/ml/registry.py) and training jobs (shared/ml/jobs.py): one set of
-- tables for every model service (ml-supervised, ml-deep-learning), read by ai-orchestration
-- and pattern-validator. Applied as the shared migration set "model-registry".
CREATE SCHEMA IF NOT EXISTS ml;

CREATE TABLE ml.models (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    kind text NOT NULL,
    task text NOT NULL CHECK (task IN ('direction', 'return')),
    horizon_bars integer NOT NULL CHECK (horizon_bars >= 1),
    symbols text[] NOT NULL CHECK (cardinality(symbols) >= 1),
    timeframe text NOT NULL,
    feature_set text NOT NULL,
    features text[] NOT NULL,
    train_start timestamptz NOT NULL,
    train_end timestamptz NOT NULL,
    labelling jsonb NOT NULL,
    hyperparameters jsonb NOT NULL,
    seed bigint NOT NULL,
    metrics jsonb NOT NULL,
    -- A regressor's training target spread (Prediction.score = return / scale); 1 for classifiers.
    score_scale double precision NOT NULL,
    data_fingerprint text NOT NULL,
    training_rows integer NOT NULL,
    artifact_path text NOT NULL,
    artifact_sha256 text NOT NULL,
    feature_distributions jsonb NOT NULL,
    status text NOT NULL DEFAULT 'candidate' CHECK (status IN ('candidate', 'champion', 'retired')),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    promoted_by text,
    promoted_at timestamptz,
    retired_at timestamptz,
    expires_at timestamptz NOT NULL,
    flag_reason text,
    flagged_at timestamptz,
    job_id uuid,
    UNIQUE (name, version)
);

-- One champion per slot: a name, for its symbols, timeframe and task.
CREATE UNIQUE INDEX models_one_champion_per_slot ON ml.models (name, timeframe, task, symbols)
    WHERE status = 'champion';
CREATE INDEX models_by_status ON ml.models (status, kind);

CREATE TABLE ml.jobs (
    id uuid PRIMARY KEY,
    kind text NOT NULL,
    spec jsonb NOT NULL,
    state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    stage text NOT NULL DEFAULT 'queued',
    percent double precision NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    heartbeat_at timestamptz,
    worker text,
    model_id uuid REFERENCES ml.models (id),
    error text
);

CREATE INDEX jobs_queued ON ml.jobs (kind, created_at) WHERE state = 'queued';
