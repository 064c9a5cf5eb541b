-- The simulated chain: every transaction the simulated venues processed, by signature.
-- It lives in a schema of its own, apart from the engine's tables, and outlives the engine
-- as a real chain would. Idempotent: applied whenever the chain is opened.

CREATE SCHEMA IF NOT EXISTS chain;

-- Earlier versions kept this ledger beside the engine's tables as venue_transactions.
ALTER TABLE IF EXISTS public.venue_transactions SET SCHEMA chain;
ALTER TABLE IF EXISTS chain.venue_transactions RENAME TO transactions;
ALTER INDEX IF EXISTS chain.venue_transactions_by_order RENAME TO transactions_by_order;

CREATE TABLE IF NOT EXISTS chain.transactions (
    signature      text PRIMARY KEY,
    dex            text NOT NULL,
    order_id       uuid NOT NULL,
    landed         boolean NOT NULL,
    amount_in      numeric,
    amount_out     numeric,
    executed_price numeric,
    fee            numeric,
    error          text,
    at             timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS transactions_by_order ON chain.transactions (order_id);
