-- orderctl schema, version 27: new orders get time-ordered ids (UUID version 7), minted by the
-- database when the writer leaves `id` out and by orderctl itself for the orders it creates.
--
-- Why: an order's id is the key of `orders` and of every index that names an order
-- (`orders_pkey`, `placements_order`, `ledger_once_per_order`, `order_events_order`,
-- `code_items_order`, `webhook_deliveries_order`). Random ids (version 4) put each new order on a
-- random leaf page of each of those indexes, so every insert and every lookup of a recent
-- order touches a page anywhere in indexes that grow with the whole history: once they
-- outgrow `shared_buffers` the hot path reads and dirties pages it has no other use for, and
-- after each checkpoint every first touch of a page writes it whole to the WAL. A version 7 id
-- starts with the milliseconds since the epoch (RFC 9562), so new orders land on the right
-- edge of those indexes and the pages a daemon works on are the few recent ones, whatever
-- the history (measured in BENCHMARKS.md, "Time-ordered order ids").
--
-- It is also the first step of a layout that partitions `orders` by month on its id
-- (BENCHMARKS.md, "Retention"): a version 7 id says which month its order was created in, so a
-- statement by id could prune to one month's partition without naming the month.
--
-- Ids already written stay as they are (shops keep them), and a writer may still give its own
-- id of any version: nothing reads the time out of an id.
--
-- The function builds the id from `clock_timestamp()` (the moment of the insert, not its
-- transaction's start, so ids of one long transaction still increase) and `gen_random_uuid()`
-- for the 74 random bits, then sets the version nibble from 4 to 7 (bits 52 and 53 of the
-- bytea; the variant bits of `gen_random_uuid()` are already RFC 9562's).

CREATE FUNCTION orderctl_new_order_id() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

ALTER TABLE orders ALTER COLUMN id SET DEFAULT orderctl_new_order_id();
