-- Webhook signing secrets may be references, like provider credentials (issue 21): each of
-- `secret` and `previous_secret` is a non-empty JSON string (a plain value, kept working) or
-- exactly one of {"env": "VARIABLE"} / {"file": "/path"}, resolved by each orderctl process on
-- its own host when it signs. The database then holds where a signing key is, not the key.
-- Existing secrets become JSON strings, unchanged in value.
ALTER TABLE webhooks DROP CONSTRAINT webhooks_secret_check;
ALTER TABLE webhooks
    ALTER COLUMN secret TYPE jsonb USING to_jsonb(secret),
    ALTER COLUMN previous_secret TYPE jsonb USING to_jsonb(previous_secret);
ALTER TABLE webhooks
    ADD CONSTRAINT webhooks_secret_well_formed
        CHECK (orderctl_credentials_well_formed(jsonb_build_object('secret', secret))),
    ADD CONSTRAINT webhooks_previous_secret_well_formed
        CHECK (previous_secret IS NULL OR orderctl_credentials_well_formed(jsonb_build_object('secret', previous_secret)));
