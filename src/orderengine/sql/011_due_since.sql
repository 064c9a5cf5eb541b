-- When an order last became due: its acceptance, or the moment its price or a listing woke
-- it. /health's oldest unfinished age counts from it, so that a limit order that waited a
-- day by design is not taken, once woken, for an order stuck for a day. Orders accepted
-- before this migration have none and count from their acceptance.

ALTER TABLE orders ADD COLUMN due_since timestamptz;
ALTER TABLE orders ALTER COLUMN due_since SET DEFAULT now();
