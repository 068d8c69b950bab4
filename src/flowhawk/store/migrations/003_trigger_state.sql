-- What the scheduler needs besides cron and zone, and what a backfill remembers of itself.

-- A trigger row mirrors the latest revision of its flow. `active` is false while the flow or
-- the trigger is disabled in its definition; `disabled` is the switch of the API and of
-- stopAfter, which survives redeploys.
ALTER TABLE triggers
    ADD COLUMN with_seconds     boolean NOT NULL DEFAULT false,
    ADD COLUMN recover          text    NOT NULL DEFAULT 'ALL',
    ADD COLUMN stop_after       text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN late_max_seconds double precision,
    ADD COLUMN active           boolean NOT NULL DEFAULT true,
    ADD COLUMN flow_revision    integer NOT NULL DEFAULT 1;

ALTER TABLE backfills
    ADD COLUMN flow_revision    integer NOT NULL DEFAULT 1,
    ADD COLUMN timezone         text    NOT NULL DEFAULT 'UTC',
    ADD COLUMN skipped          integer NOT NULL DEFAULT 0,
    ADD COLUMN ended_at         timestamptz;

CREATE INDEX backfills_created ON backfills (created_at DESC);
