-- What accepting one order writes: its row and its first event, in one transaction (one
-- statement), as the engine and the straightforward server do. One run of this script is
-- one accepted order, so pgbench's tps is orders accepted per second.
WITH o AS (
    INSERT INTO orders (id, type, token_in, token_out, amount_in, slippage_bps, status)
    VALUES (gen_random_uuid(), 'market', 'SOL', 'USDC', 1.5, 100, 'pending')
    RETURNING id, status, attempt, created_at
)
INSERT INTO order_events (order_id, seq, status, attempt, at)
SELECT id, 1, status, attempt, created_at FROM o;
