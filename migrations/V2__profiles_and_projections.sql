-- Personal data lives here, never in the log (docs/DESIGN.md §5): a resident's
-- profile, found by a keyed hash of the phone number, erasable as a whole.
-- After erasure the row keeps only the pseudonymous id and when it went.
CREATE TABLE profiles (
    community_id uuid NOT NULL REFERENCES communities (community_id),
    person_id uuid NOT NULL,
    phone_hash bytea CHECK (length(phone_hash) = 32),
    phone text CHECK (length(phone) <= 32),
    display_name text CHECK (length(display_name) <= 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz,
    PRIMARY KEY (community_id, person_id),
    CHECK ((erased_at IS NULL) = (phone_hash IS NOT NULL))
);
CREATE UNIQUE INDEX profiles_by_phone ON profiles (community_id, phone_hash);

-- One-time sign-up codes: only their hash is kept; they expire, are used
-- once, and a code takes a bounded number of attempts.
CREATE TABLE signup_codes (
    community_id uuid NOT NULL REFERENCES communities (community_id),
    phone_hash bytea NOT NULL CHECK (length(phone_hash) = 32),
    code_hash bytea NOT NULL CHECK (length(code_hash) = 32),
    display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    issued_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    used_at timestamptz,
    PRIMARY KEY (community_id, phone_hash, issued_at)
);

-- Read models live in one schema per projection and generation, so a
-- rebuild fills a new schema while the live one keeps serving.
CREATE TABLE projection_generations (
    projection text NOT NULL,
    generation integer NOT NULL CHECK (generation >= 1),
    state text NOT NULL CHECK (state IN ('building', 'live', 'retired')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, generation)
);
CREATE UNIQUE INDEX projection_generations_one_live
    ON projection_generations (projection) WHERE state = 'live';

-- How far a generation has folded each community's log. Written in the
-- same transaction as the read model's change.
CREATE TABLE projection_checkpoints (
    projection text NOT NULL,
    generation integer NOT NULL,
    community_id uuid NOT NULL,
    position bigint NOT NULL CHECK (position >= 0),
    PRIMARY KEY (projection, generation, community_id),
    FOREIGN KEY (projection, generation)
        REFERENCES projection_generations (projection, generation) ON DELETE CASCADE
);
