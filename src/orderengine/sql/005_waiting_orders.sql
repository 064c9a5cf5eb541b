-- Limit and sniper orders: an order may wait in `pending` for its price or for a listing,
-- until it expires; one price watcher per pair of tokens, across every engine. Orders are
-- claimed by priority, then position; an order with no priority (it waits, or it ended) is
-- not claimed. The index of the claimable ones leaves out those an engine holds, so that it
-- stays small and an order's status changes while it is held do not touch it.

ALTER TABLE orders ADD COLUMN limit_price numeric CHECK (limit_price > 0);
ALTER TABLE orders ADD COLUMN expires_at timestamptz;
ALTER TABLE orders ADD COLUMN awaits text CHECK (awaits IN ('price', 'listing'));
ALTER TABLE orders ADD COLUMN best_price numeric;
ALTER TABLE orders ADD COLUMN priority real;
UPDATE orders SET priority = 0 WHERE status NOT IN ('confirmed', 'failed');

CREATE INDEX orders_due ON orders (priority, position)
    WHERE priority IS NOT NULL AND lease_owner IS NULL;
CREATE INDEX orders_waiting ON orders (token_in, token_out, limit_price)
    WHERE awaits IS NOT NULL;

CREATE TABLE price_watch (
    token_in         text NOT NULL,
    token_out        text NOT NULL,
    best_price       numeric,
    reported_price   numeric,
    observed_at      timestamptz,
    lease_owner      uuid,
    lease_expires_at timestamptz,
    PRIMARY KEY (token_in, token_out)
);
