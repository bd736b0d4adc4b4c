-- Which version of a projection's fold filled each generation. A runner
-- that starts with a newer fold than the live generation's rebuilds it
-- into a new generation while the old one serves, so figures whose
-- definition was corrected are corrected in existing deployments too.
ALTER TABLE projection_generations ADD COLUMN fold_version integer NOT NULL DEFAULT 1;

-- Rebuilds asked for (a community's time zone was corrected): a runner
-- rebuilds a projection whose live generation is older than a request.
CREATE TABLE projection_rebuild_requests (
    projection text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    reason text NOT NULL
);
CREATE INDEX projection_rebuild_requests_by_projection
    ON projection_rebuild_requests (projection, requested_at);
