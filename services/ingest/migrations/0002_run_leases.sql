-- Runs across replicas: the replica running a run (owner) holds a lease on it, renewed while
-- it runs; any replica takes over or fails a run whose lease ran out. At most one pending or
-- running run per source and parameters (parameters are stored as canonical JSON, keys sorted),
-- so two replicas asked for the same load at once start it once.
ALTER TABLE runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN restarts BIGINT NOT NULL DEFAULT 0;
UPDATE runs SET state = 'failed', failure = 'the same load was running twice', ended_at = created_at
WHERE state IN ('pending', 'running') AND id NOT IN (
    SELECT MIN(id) FROM runs WHERE state IN ('pending', 'running') GROUP BY source, parameters
);
CREATE UNIQUE INDEX runs_active_load ON runs (source, parameters) WHERE state IN ('pending', 'running');
CREATE INDEX runs_load ON runs (source, parameters, created_at);
CREATE INDEX runs_lease ON runs (lease_until) WHERE state IN ('pending', 'running');
