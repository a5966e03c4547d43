-- Rover tracks, their waypoints (keyed by site and drive) and traverse segments (keyed by sol
-- and the drive's RMCs). Every source property is kept: the known ones in typed columns, the
-- others in `extra` (a JSON object). `digest` is the SHA-256 of a row's content, so a load
-- again tells changed rows from unchanged ones. Times are microseconds since the epoch. No
-- column is NULL (prepared statements keep the type of a parameter's first bind): an unknown
-- spacecraft clock is -1, no images is ''.
CREATE TABLE tracks (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE waypoints (
    track TEXT NOT NULL,
    site BIGINT NOT NULL,
    drive BIGINT NOT NULL,
    sol BIGINT NOT NULL,
    rmc TEXT NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    elev_geoid DOUBLE PRECISION NOT NULL,
    elev_radii DOUBLE PRECISION NOT NULL,
    radius DOUBLE PRECISION NOT NULL,
    easting DOUBLE PRECISION NOT NULL,
    northing DOUBLE PRECISION NOT NULL,
    roll DOUBLE PRECISION NOT NULL,
    pitch DOUBLE PRECISION NOT NULL,
    yaw DOUBLE PRECISION NOT NULL,
    yaw_rad DOUBLE PRECISION NOT NULL,
    tilt DOUBLE PRECISION NOT NULL,
    dist_m DOUBLE PRECISION NOT NULL,
    dist_total_m DOUBLE PRECISION NOT NULL,
    dist_km DOUBLE PRECISION NOT NULL,
    dist_mi DOUBLE PRECISION NOT NULL,
    sclk_start BIGINT NOT NULL,
    sclk_end BIGINT NOT NULL,
    final TEXT NOT NULL,
    note TEXT NOT NULL,
    images TEXT NOT NULL,
    extra TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (track, site, drive)
);
CREATE INDEX waypoints_sol ON waypoints (track, sol, site, drive);

CREATE TABLE traverse_segments (
    track TEXT NOT NULL,
    sol BIGINT NOT NULL,
    from_rmc TEXT NOT NULL,
    to_rmc TEXT NOT NULL,
    length_m DOUBLE PRECISION NOT NULL,
    sclk_start BIGINT NOT NULL,
    sclk_end BIGINT NOT NULL,
    has_elevation BIGINT NOT NULL,
    points TEXT NOT NULL,
    extra TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (track, sol, from_rmc, to_rmc)
);
