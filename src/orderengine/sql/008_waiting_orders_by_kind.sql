-- The waiting orders, found by what they wait for: every query of them names `awaits`
-- ('price' or 'listing'), which now leads the index. With it only in the index's predicate,
-- the planner preferred orders_by_status and read every pending order, the whole backlog,
-- at each poll of the price watcher.

DROP INDEX orders_waiting;
CREATE INDEX orders_waiting ON orders (awaits, token_in, token_out, limit_price)
    WHERE awaits IS NOT NULL;
