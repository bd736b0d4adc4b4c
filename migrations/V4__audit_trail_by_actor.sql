-- Auditors ask "what did this person do?": the actor's events of a
-- community in position order, without scanning the whole log.
CREATE INDEX events_by_actor ON events (community_id, (metadata ->> 'actor_id'), position)
    WHERE metadata ? 'actor_id';
