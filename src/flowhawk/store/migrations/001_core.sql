-- Flows with revisions, executions, task runs, logs and the file index.

CREATE TABLE flows (
    namespace   text        NOT NULL,
    id          text        NOT NULL,
    revision    integer     NOT NULL,
    source      text        NOT NULL,
    deleted     boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, id, revision)
);

CREATE TABLE executions (
    id              text        PRIMARY KEY,
    seq             bigserial   UNIQUE,
    namespace       text        NOT NULL,
    flow_id         text        NOT NULL,
    flow_revision   integer     NOT NULL,
    state           text        NOT NULL,
    labels          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    inputs          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    outputs         jsonb,
    trigger         jsonb,
    trigger_id      text,
    trigger_date    timestamptz,
    parent_id       text,
    original_id     text,
    backfill_id     text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    start_date      timestamptz,
    end_date        timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    worker_id       text,
    heartbeat_at    timestamptz,
    kill_requested  boolean     NOT NULL DEFAULT false
);

CREATE INDEX executions_flow_created ON executions (namespace, flow_id, created_at DESC, id DESC);
CREATE INDEX executions_created ON executions (created_at DESC, id DESC);
CREATE INDEX executions_state ON executions (state);
CREATE INDEX executions_labels ON executions USING gin (labels jsonb_path_ops);
CREATE INDEX executions_trigger_date ON executions (namespace, flow_id, trigger_date);

CREATE TABLE task_runs (
    id              text        PRIMARY KEY,
    execution_id    text        NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    path            text        NOT NULL,
    task_id         text        NOT NULL,
    parent_path     text,
    value           text,
    state           text        NOT NULL,
    attempts        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    outputs         jsonb,
    error           text,
    start_date      timestamptz,
    end_date        timestamptz,
    UNIQUE (execution_id, path)
);

CREATE TABLE logs (
    id              bigserial   PRIMARY KEY,
    execution_id    text        NOT NULL,
    task_run_id     text,
    task_id         text,
    attempt         integer,
    ts              timestamptz NOT NULL,
    level           text        NOT NULL,
    message         text        NOT NULL
);

CREATE INDEX logs_execution ON logs (execution_id, id);

CREATE TABLE files (
    execution_id    text        NOT NULL,
    task_id         text,
    uri             text        NOT NULL,
    size            bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, uri)
);
