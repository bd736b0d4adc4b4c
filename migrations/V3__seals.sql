-- Signed statements of a community's chain head (docs/AUDIT.md): each seal
-- names a position and the hash the chain had there, signed with the
-- server's Ed25519 key. A history rewritten afterwards, even with every hash
-- recomputed, no longer has that hash at that position.
CREATE TABLE seals (
    community_id uuid NOT NULL REFERENCES communities (community_id),
    position bigint NOT NULL CHECK (position >= 1),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    sealed_at timestamptz NOT NULL,
    public_key bytea NOT NULL CHECK (length(public_key) = 32),
    signature bytea NOT NULL,
    PRIMARY KEY (community_id, position)
);
