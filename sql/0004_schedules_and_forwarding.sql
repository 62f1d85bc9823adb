-- orderctl schema, version 4: per-provider check schedules, and forwarding orders to another
-- tenant (the "internal" provider type).

-- ---------------------------------------------------------------------------------------------
-- A provider's own check schedule. Each value set replaces the global one (flag, environment or
-- built-in default) for that provider's orders; NULL keeps the global one. Durations in
-- milliseconds, within the bounds `apply` holds (src/domain/backoff.rs, `bounds`).

ALTER TABLE providers
    ADD COLUMN schedule_first_check_ms bigint
        CONSTRAINT provider_schedule_first_check_bounds CHECK (schedule_first_check_ms BETWEEN 0 AND 2592000000),
    ADD COLUMN schedule_backoff_base_ms bigint
        CONSTRAINT provider_schedule_backoff_base_bounds CHECK (schedule_backoff_base_ms BETWEEN 100 AND 2592000000),
    ADD COLUMN schedule_backoff_max_ms bigint
        CONSTRAINT provider_schedule_backoff_max_bounds CHECK (schedule_backoff_max_ms BETWEEN 100 AND 2592000000),
    ADD COLUMN schedule_max_checks integer
        CONSTRAINT provider_schedule_max_checks_bounds CHECK (schedule_max_checks BETWEEN 1 AND 1000),
    ADD COLUMN schedule_give_up_after_ms bigint
        CONSTRAINT provider_schedule_give_up_after_bounds CHECK (schedule_give_up_after_ms BETWEEN 1000 AND 2592000000),
    ADD CONSTRAINT provider_schedule_backoff_max_not_below_base
        CHECK (schedule_backoff_max_ms >= schedule_backoff_base_ms),
    ADD CONSTRAINT provider_schedule_first_check_within_give_up
        CHECK (schedule_first_check_ms <= schedule_give_up_after_ms);
