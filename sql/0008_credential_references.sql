-- Provider credentials may be references instead of values (issue 21): each field is a
-- non-empty string (a plain value, kept working) or exactly one of {"env": "VARIABLE"} /
-- {"file": "/path"}, resolved by each orderctl process on its own host. The database then holds
-- where a secret is, not the secret. Anything else written by other software is refused here.
CREATE FUNCTION orderctl_credentials_well_formed(c jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(c) = 'object' AND NOT EXISTS (
        SELECT 1 FROM jsonb_each(c) AS e(field, value)
         WHERE NOT (
               (jsonb_typeof(e.value) = 'string' AND e.value #>> '{}' <> '')
            OR (jsonb_typeof(e.value) = 'object'
                AND (SELECT count(*) FROM jsonb_object_keys(e.value)) = 1
                AND (coalesce(e.value ->> 'env', '') <> '' OR coalesce(e.value ->> 'file', '') <> ''))))
$$;

ALTER TABLE providers ADD CONSTRAINT providers_credentials_well_formed
    CHECK (credentials = '{}'::jsonb OR orderctl_credentials_well_formed(credentials));
