CREATE TABLE plot_jobs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    format BIGINT NOT NULL,
    state BIGINT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    attempts BIGINT NOT NULL DEFAULT 0,
    plot_key TEXT,
    plot_size_bytes BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT
);
CREATE INDEX plot_jobs_created ON plot_jobs (created_at);
