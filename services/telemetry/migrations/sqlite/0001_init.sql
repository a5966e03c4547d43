-- Devices, their sensors, readings and the current-value view. Times are microseconds since
-- the epoch, UTC. Readings stay narrow: a surrogate sensor key, the time and the value.
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    latitude DOUBLE PRECISION,
    longitude DOUBLE PRECISION,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT
);
CREATE INDEX devices_source ON devices (source, id);

-- AUTOINCREMENT: a deleted sensor's key is never handed out again.
CREATE TABLE sensors (
    sensor_key INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    sensor TEXT NOT NULL,
    kind TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL DEFAULT '',
    UNIQUE (device, sensor)
);
CREATE INDEX sensors_sensor ON sensors (sensor, device);
CREATE INDEX sensors_kind ON sensors (kind, device, sensor);

CREATE TABLE readings (
    sensor_key BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sensor_key, ts)
) WITHOUT ROWID;

CREATE TABLE current_values (
    sensor_key INTEGER PRIMARY KEY,
    ts BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL
);
CREATE INDEX current_values_ts ON current_values (ts);
