-- Ingest runs: one load of one source, with its progress, counts and item errors.
-- Times are microseconds since the epoch, UTC.
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    parameters TEXT NOT NULL,
    state TEXT NOT NULL,
    progress_done BIGINT NOT NULL DEFAULT 0,
    progress_total BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL DEFAULT 0,
    updated BIGINT NOT NULL DEFAULT 0,
    skipped BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    errors TEXT NOT NULL DEFAULT '[]',
    failure TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT
);
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_state ON runs (state);
