-- The feed of all orders: every event gets a global position once it is committed, given by
-- one sequencer at a time (under an advisory lock), so that positions become visible in
-- order and a reader resuming after a position never misses an event committed late.

ALTER TABLE order_events ADD COLUMN position bigint;
CREATE UNIQUE INDEX order_events_by_position ON order_events (position)
    WHERE position IS NOT NULL;
CREATE INDEX order_events_unpositioned ON order_events (at, order_id, seq)
    WHERE position IS NULL;
