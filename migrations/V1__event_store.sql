-- The event store: one append-only log per community, hash-chained.
-- See docs/AUDIT.md for the canonical form that `hash` is computed over.

CREATE TABLE communities (
    community_id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The head row is the serialisation point of a community's log: an appending
-- transaction locks it, so positions are assigned and committed in order.
CREATE TABLE community_heads (
    community_id uuid PRIMARY KEY REFERENCES communities (community_id),
    last_position bigint NOT NULL DEFAULT 0 CHECK (last_position >= 0),
    last_hash bytea NOT NULL CHECK (length(last_hash) = 32),
    last_recorded_at timestamptz
);

-- Moves a head only from where the caller planned: when another batch or
-- process moved it first, raises CL001 so the caller's whole transaction
-- (sent as one pipeline, COMMIT included) rolls back without a round trip
-- while the head row is locked.
CREATE FUNCTION move_community_head(
    p_community_id uuid, p_position bigint, p_hash bytea, p_recorded_at timestamptz,
    p_base_position bigint, p_base_hash bytea
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE community_heads
       SET last_position = p_position, last_hash = p_hash, last_recorded_at = p_recorded_at
     WHERE community_id = p_community_id
       AND last_position = p_base_position AND last_hash = p_base_hash;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the head of community % is no longer at position %',
            p_community_id, p_base_position USING ERRCODE = 'CL001';
    END IF;
END;
$$;

-- No foreign key to communities: the writer appends only after it found the
-- community's head row, and a per-row referential check cost a tenth of the
-- insert (docs/adr/0002).
CREATE TABLE events (
    community_id uuid NOT NULL,
    position bigint NOT NULL CHECK (position >= 1),
    stream_id text NOT NULL,
    stream_type text NOT NULL,
    stream_version bigint NOT NULL CHECK (stream_version >= 1),
    event_type text NOT NULL,
    event_version text NOT NULL,
    payload jsonb NOT NULL,
    metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL,
    previous_hash bytea NOT NULL CHECK (length(previous_hash) = 32),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (community_id, position)
);

CREATE UNIQUE INDEX events_by_stream ON events (community_id, stream_id, stream_version);
-- No index on recorded_at: it never decreases within a community (the
-- store clamps it), so "the position at a time" is a binary search over the
-- primary key, and every append saves an index insert.

-- Stored events are never edited. This guard is defence in depth: the hash
-- chain is what proves it, because a database owner can drop a trigger.
CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- The first outcome of an idempotent append, returned again to a repeat.
CREATE TABLE idempotency_keys (
    community_id uuid NOT NULL REFERENCES communities (community_id),
    idempotency_key text NOT NULL,
    request_hash bytea NOT NULL,
    outcome jsonb NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (community_id, idempotency_key)
);

-- Snapshots speed up loading long streams; they are never needed for correctness.
CREATE TABLE snapshots (
    community_id uuid NOT NULL REFERENCES communities (community_id),
    stream_id text NOT NULL,
    stream_type text NOT NULL,
    stream_version bigint NOT NULL CHECK (stream_version >= 1),
    snapshot_number bigint NOT NULL,
    state jsonb NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, stream_id)
);

-- What residents type or attach lives beside the log under its SHA-256; events
-- carry only the hash. Erasing removes the body and leaves a tombstone.
CREATE TABLE contents (
    community_id uuid NOT NULL REFERENCES communities (community_id),
    content_hash bytea NOT NULL CHECK (length(content_hash) = 32),
    media_type text NOT NULL,
    body bytea,
    stored_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz,
    erased_by text,
    erased_reason text,
    PRIMARY KEY (community_id, content_hash),
    CHECK ((body IS NULL) = (erased_at IS NOT NULL))
);
