-- Each community's log as a Merkle tree (docs/AUDIT.md, "The tree"), kept by
-- the community's writer in the same transaction as the events it covers.
--
-- The head row carries the tree's frontier: the roots of the complete
-- subtrees the tree of `tree_size` leaves splits into, largest first, each
-- 32 bytes, concatenated. Appending needs nothing else. `tree_size` trails
-- `last_position` only for logs written before the tree (and by a store
-- told not to keep it, for measuring its cost); the next batch written
-- under the head lock folds the missing events in.
ALTER TABLE community_heads
    ADD COLUMN tree_size bigint NOT NULL DEFAULT 0 CHECK (tree_size >= 0),
    ADD COLUMN tree_frontier bytea NOT NULL DEFAULT '\x'::bytea
        CHECK (length(tree_frontier) % 32 = 0);

-- Complete subtrees of 256 leaves and more, stored as they complete (one row
-- per 128 events); smaller ones are hashed again from the events' hashes
-- when a proof needs them. Subtree `(level, index)` covers leaves
-- `index * 2^level` up to `(index + 1) * 2^level`, leaf `p - 1` being the
-- event at position `p`. Derived data: a wrong row gives proofs that fail
-- against the signed root, never a wrong proof that holds.
CREATE TABLE tree_nodes (
    community_id uuid NOT NULL,
    level smallint NOT NULL CHECK (level BETWEEN 8 AND 62),
    index bigint NOT NULL CHECK (index >= 0),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (community_id, level, index)
);

CREATE TRIGGER tree_nodes_append_only
    BEFORE UPDATE OR DELETE ON tree_nodes
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

-- The head moves with its tree. A NULL tree size leaves the tree as it was
-- (a store not keeping it).
DROP FUNCTION move_community_head(uuid, bigint, bytea, timestamptz, bigint, bytea);
CREATE FUNCTION move_community_head(
    p_community_id uuid, p_position bigint, p_hash bytea, p_recorded_at timestamptz,
    p_base_position bigint, p_base_hash bytea, p_tree_size bigint, p_tree_frontier bytea
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE community_heads
       SET last_position = p_position, last_hash = p_hash, last_recorded_at = p_recorded_at,
           tree_size = coalesce(p_tree_size, tree_size),
           tree_frontier = coalesce(p_tree_frontier, tree_frontier)
     WHERE community_id = p_community_id
       AND last_position = p_base_position AND last_hash = p_base_hash;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the head of community % is no longer at position %',
            p_community_id, p_base_position USING ERRCODE = 'CL001';
    END IF;
END;
$$;

-- A seal signs the tree's root at its position as well as the chain's hash
-- there (message v2). Seals made before the tree have none and keep v1.
ALTER TABLE seals ADD COLUMN tree_root bytea CHECK (length(tree_root) = 32);
