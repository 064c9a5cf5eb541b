-- The tables the yardsticks write, created in a fresh database of their own for the
-- straightforward server and for pgbench: shaped like the engine's `orders` and
-- `order_events` (schema.sql at the top of the repository), with the keys and the index by
-- status that most such systems have, and the venue's ledger (shaped like the simulated
-- chain's `chain.transactions`) that the lifecycle script writes. The engine's own tables
-- have more indexes and columns (idempotency, claims, leases, waiting orders, the event
-- feed), so each write here costs the database no more than the engine's.

CREATE TYPE order_status AS ENUM
    ('pending', 'routing', 'building', 'submitted', 'confirmed', 'failed');

CREATE TABLE orders (
    id             uuid PRIMARY KEY,
    position       bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    type           text NOT NULL,
    token_in       text NOT NULL,
    token_out      text NOT NULL,
    amount_in      numeric NOT NULL CHECK (amount_in > 0),
    slippage_bps   integer NOT NULL CHECK (slippage_bps > 0),
    limit_price    numeric CHECK (limit_price > 0),
    expires_at     timestamptz,
    status         order_status NOT NULL,
    attempt        integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    last_seq       integer NOT NULL DEFAULT 1,
    dex            text,
    tx_hash        text,
    executed_price numeric,
    amount_out     numeric,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_by_status ON orders (status, position);

CREATE TABLE order_events (
    order_id uuid NOT NULL REFERENCES orders (id),
    seq      integer NOT NULL CHECK (seq >= 1),
    status   order_status NOT NULL,
    attempt  integer NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    details  jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (order_id, seq)
);

CREATE TABLE ledger (
    signature      text PRIMARY KEY,
    dex            text NOT NULL,
    order_id       uuid NOT NULL,
    landed         boolean NOT NULL,
    amount_in      numeric,
    amount_out     numeric,
    executed_price numeric,
    fee            numeric,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_by_order ON ledger (order_id);
