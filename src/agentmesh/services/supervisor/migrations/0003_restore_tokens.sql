-- The guard's sealed restore token (ciphertext: placeholder -> value, bound to the tenant, expiring) per
-- thread, so <EMAIL_1> means the same value across a conversation's turns, and a copy per run, so the
-- answer's placeholders can be put back for the user, also after a Resume. Never plaintext PII.
ALTER TABLE threads ADD COLUMN IF NOT EXISTS restore_token text NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN IF NOT EXISTS restore_token text NOT NULL DEFAULT '';
