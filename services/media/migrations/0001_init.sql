CREATE TABLE images (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    taken_at BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    probability DOUBLE PRECISION,
    has_subject BIGINT,
    box_x DOUBLE PRECISION,
    box_y DOUBLE PRECISION,
    box_width DOUBLE PRECISION,
    box_height DOUBLE PRECISION,
    model TEXT,
    review_state BIGINT NOT NULL DEFAULT 1,
    reviewed_at BIGINT,
    filename TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    UNIQUE (source, taken_at)
);
CREATE INDEX images_taken ON images (taken_at);
CREATE INDEX images_review ON images (review_state);

CREATE TABLE objects (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    labels TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX objects_kind_created ON objects (kind, created_at);
