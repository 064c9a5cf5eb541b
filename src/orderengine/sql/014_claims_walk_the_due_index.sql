-- The orders a claim takes, read by walking the index `orders_due` in its order. Asked for in
-- the claim's own statement, they were read as the planner saw fit, and its statistics lag a
-- sudden backlog: analysed when few orders were due, it read every due order through a
-- bitmap and sorted them all to take the first few, so a claim cost in proportion to the
-- backlog (4 to 8 ms with 12 000 orders due, against 0.1 to 0.4 ms walking the index).
-- With sorting disabled for this query alone, the index's order is the plan whatever the
-- statistics say. ROWS tells the claim's update to expect a few ids, looked up one by one.
CREATE FUNCTION due_orders(statuses order_status[], most integer) RETURNS SETOF uuid
LANGUAGE sql VOLATILE ROWS 50 SET enable_sort = off AS $$
    SELECT id FROM orders
    WHERE priority IS NOT NULL AND lease_owner IS NULL AND status = ANY(statuses)
      AND (next_attempt_at IS NULL OR next_attempt_at <= clock_timestamp())
    ORDER BY priority, position LIMIT most
    FOR UPDATE SKIP LOCKED
$$;
