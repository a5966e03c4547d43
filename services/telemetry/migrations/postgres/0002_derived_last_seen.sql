-- A device's last-seen time is derived from its sensors' current values: writes of readings
-- no longer update (and lock) the device row.
ALTER TABLE devices DROP COLUMN last_seen_at;
