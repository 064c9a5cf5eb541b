-- An order's whole life, each step in a transaction of its own as the engine commits it:
-- accepted (its row and first event), then routing, building and submitted (each status
-- change with its event), the venue's ledger row for the sent transaction, and the
-- confirmation with its event: six transactions. One run of this script is one order's
-- life, so pgbench's tps is orders executed per second (six transactions each).
-- Run with -M prepared or extended: :order_id is then sent as a parameter.
WITH o AS (
    INSERT INTO orders (id, type, token_in, token_out, amount_in, slippage_bps, status)
    VALUES (gen_random_uuid(), 'market', 'SOL', 'USDC', 1.5, 100, 'pending')
    RETURNING id, status, attempt, created_at
), e AS (
    INSERT INTO order_events (order_id, seq, status, attempt, at)
    SELECT id, 1, status, attempt, created_at FROM o
)
SELECT id AS order_id FROM o \gset

WITH o AS (
    UPDATE orders SET status = 'routing', dex = 'raydium', last_seq = last_seq + 1,
                      updated_at = clock_timestamp()
    WHERE id = :order_id
    RETURNING id, last_seq, status, attempt, updated_at
)
INSERT INTO order_events (order_id, seq, status, attempt, at, details)
SELECT id, last_seq, status, attempt, updated_at,
       '{"dex": "raydium", "quotes": [{"dex": "raydium", "price": "151.2"},
                                      {"dex": "meteora", "price": "150.9"}]}'
FROM o;

WITH o AS (
    UPDATE orders SET status = 'building', last_seq = last_seq + 1,
                      updated_at = clock_timestamp()
    WHERE id = :order_id
    RETURNING id, last_seq, status, attempt, updated_at
)
INSERT INTO order_events (order_id, seq, status, attempt, at, details)
SELECT id, last_seq, status, attempt, updated_at, '{"transaction": {"minAmountOut": "225.1"}}'
FROM o;

WITH o AS (
    UPDATE orders SET status = 'submitted', tx_hash = md5(id::text),
                      last_seq = last_seq + 1, updated_at = clock_timestamp()
    WHERE id = :order_id
    RETURNING id, last_seq, status, attempt, updated_at, tx_hash
)
INSERT INTO order_events (order_id, seq, status, attempt, at, details)
SELECT id, last_seq, status, attempt, updated_at, jsonb_build_object('txHash', tx_hash)
FROM o;

INSERT INTO ledger (signature, dex, order_id, landed, amount_in, amount_out, executed_price, fee)
VALUES (md5(:order_id::text), 'raydium', :order_id, true, 1.5, 226.8, 151.2, 0.0045);

WITH o AS (
    UPDATE orders SET status = 'confirmed', executed_price = 151.2, amount_out = 226.8,
                      last_seq = last_seq + 1, updated_at = clock_timestamp()
    WHERE id = :order_id
    RETURNING id, last_seq, status, attempt, updated_at
)
INSERT INTO order_events (order_id, seq, status, attempt, at, details)
SELECT id, last_seq, status, attempt, updated_at,
       '{"executedPrice": "151.2", "amountOut": "226.8"}'
FROM o;
