-- Images as built: bytes stored once per content hash (a blob, shared by every image with
-- those bytes and counted), the image row pointing at its blob. Replaces the unused table of
-- 0001, whose sha256 was unique per image.
DROP TABLE images;

CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    thumbnail_sha256 TEXT NOT NULL,
    thumbnail_content_type TEXT NOT NULL,
    thumbnail_size_bytes BIGINT NOT NULL,
    -- images pointing here, plus uploads in flight that reserved it
    refs BIGINT NOT NULL,
    -- 1 once the original and thumbnail are in the object store
    stored BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE images (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    taken_at BIGINT NOT NULL,
    sha256 TEXT NOT NULL REFERENCES blobs (sha256),
    has_detection BIGINT NOT NULL,
    probability DOUBLE PRECISION NOT NULL,
    has_subject BIGINT NOT NULL,
    -- the box, when has_box is 1 (no NULL parameters: PostgreSQL's prepared statements keep
    -- the type of the first bind)
    has_box BIGINT NOT NULL,
    box_x DOUBLE PRECISION NOT NULL,
    box_y DOUBLE PRECISION NOT NULL,
    box_width DOUBLE PRECISION NOT NULL,
    box_height DOUBLE PRECISION NOT NULL,
    model TEXT NOT NULL,
    review_state BIGINT NOT NULL,
    reviewed_at BIGINT,
    filename TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (source, taken_at)
);
CREATE INDEX images_taken ON images (taken_at, id);
CREATE INDEX images_probability ON images (probability, id);
CREATE INDEX images_review_taken ON images (review_state, taken_at, id);
CREATE INDEX images_blob ON images (sha256, source);
