-- Scheduling, backfills, workers and the execution queue.

-- Executions the scheduler created for a live tick: at most one per (flow, trigger, tick).
ALTER TABLE executions ADD COLUMN scheduled boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX executions_one_per_tick
    ON executions (namespace, flow_id, trigger_id, trigger_date) WHERE scheduled;

-- The queue: executions waiting for a worker, oldest first.
CREATE INDEX executions_waiting ON executions (seq) WHERE state IN ('CREATED', 'QUEUED');
CREATE INDEX executions_running ON executions (namespace, flow_id) WHERE state = 'RUNNING';
CREATE INDEX executions_backfill ON executions (backfill_id, state) WHERE backfill_id IS NOT NULL;

-- One row per Schedule trigger of a deployed flow: where its clock stands.
CREATE TABLE triggers (
    namespace       text        NOT NULL,
    flow_id         text        NOT NULL,
    trigger_id      text        NOT NULL,
    cron            text        NOT NULL,
    timezone        text        NOT NULL DEFAULT 'UTC',
    next_date       timestamptz,
    last_date       timestamptz,
    disabled        boolean     NOT NULL DEFAULT false,
    disabled_reason text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, flow_id, trigger_id)
);
CREATE INDEX triggers_due ON triggers (next_date) WHERE NOT disabled;

CREATE TABLE backfills (
    id              text        PRIMARY KEY,
    namespace       text        NOT NULL,
    flow_id         text        NOT NULL,
    trigger_id      text        NOT NULL,
    start_date      timestamptz NOT NULL,
    end_date        timestamptz NOT NULL,
    parallelism     integer     NOT NULL DEFAULT 1 CHECK (parallelism >= 1),
    labels          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    inputs          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    only_missing    boolean     NOT NULL DEFAULT false,
    state           text        NOT NULL DEFAULT 'RUNNING',
    ticks           integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workers (
    id              text        PRIMARY KEY,
    hostname        text        NOT NULL,
    pid             integer     NOT NULL,
    kind            text        NOT NULL DEFAULT 'worker',
    threads         integer     NOT NULL DEFAULT 1,
    started_at      timestamptz NOT NULL DEFAULT now(),
    heartbeat_at    timestamptz NOT NULL DEFAULT now(),
    stopped_at      timestamptz
);
