-- 3: which versions are kept loaded or unloaded (NULL: loaded on first request), kept across restarts.
ALTER TABLE versions ADD COLUMN desired_state TEXT CHECK (desired_state IN ('loaded', 'unloaded'));
