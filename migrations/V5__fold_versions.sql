-- Which version of a projection's fold filled each generation. A runner
-- that starts with a newer fold than the live generation's rebuilds it
-- into a new generation while the old one serves, so figures whose
-- definition was corrected are corrected in existing deployments too.
ALTER TABLE projection_generations ADD COLUMN fold_version integer NOT NULL DEFAULT 1;
