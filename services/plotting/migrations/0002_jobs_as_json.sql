-- The spec is kept as JSON, the state as its name; identical requests share a spec key.
DROP TABLE plot_jobs;
CREATE TABLE plot_jobs (
    id TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    spec_key TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    attempts BIGINT NOT NULL DEFAULT 0,
    data_version TEXT,
    plot_key TEXT,
    plot_sha256 TEXT NOT NULL DEFAULT '',
    plot_size_bytes BIGINT NOT NULL DEFAULT 0,
    point_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT
);
CREATE INDEX plot_jobs_created ON plot_jobs (created_at, id);
CREATE INDEX plot_jobs_state_created ON plot_jobs (state, created_at, id);
CREATE INDEX plot_jobs_spec_key ON plot_jobs (spec_key, created_at);
