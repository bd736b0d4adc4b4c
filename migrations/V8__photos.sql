-- Photos uploaded by residents and staff (docs/PHOTOS.md). The bytes live in
-- the object store; this row is what the server knows of them: whose
-- community, their SHA-256 (which the content piece that attaches them lists,
-- so the chain covers the bytes), and which report took them. A photo is taken
-- once, by one content piece: `content_hash` is set when a report's or a
-- resolution's photo list names it, before that list's event is appended; a
-- retry of the same command names the same list. Erasing removes the bytes
-- and leaves the row as a tombstone, so the photo answers "gone" for good.
CREATE TABLE photos (
    photo_id uuid PRIMARY KEY,
    community_id uuid NOT NULL REFERENCES communities (community_id),
    sha256 bytea NOT NULL CHECK (length(sha256) = 32),
    thumbnail_sha256 bytea NOT NULL CHECK (length(thumbnail_sha256) = 32),
    width integer NOT NULL CHECK (width > 0),
    height integer NOT NULL CHECK (height > 0),
    byte_count integer NOT NULL CHECK (byte_count > 0),
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    content_hash bytea CHECK (length(content_hash) = 32),
    report_id uuid,
    erased_at timestamptz,
    erased_by text,
    erased_reason text,
    CHECK ((erased_at IS NULL) = (erased_by IS NULL)),
    CHECK ((content_hash IS NULL) = (report_id IS NULL))
);
