-- The whole schema of orderengine. Idempotent: applied at every start.

CREATE TABLE IF NOT EXISTS orders (
    id              uuid PRIMARY KEY,
    -- Acceptance order: recovery resumes orders in it, and listings page by it.
    position        bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    type            text NOT NULL,
    token_in        text NOT NULL,
    token_out       text NOT NULL,
    amount_in       numeric NOT NULL CHECK (amount_in > 0),
    slippage_bps    integer NOT NULL CHECK (slippage_bps > 0),
    status          text NOT NULL CHECK (status IN
                        ('pending', 'routing', 'building', 'submitted', 'confirmed', 'failed')),
    attempt         integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    last_seq        integer NOT NULL DEFAULT 1,
    dex             text,
    tx_hash         text,
    executed_price  numeric,
    amount_out      numeric,
    error           text,
    idempotency_key text UNIQUE,
    request_digest  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS orders_unfinished
    ON orders (position) WHERE status NOT IN ('confirmed', 'failed');
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, position);

CREATE TABLE IF NOT EXISTS order_events (
    order_id uuid NOT NULL REFERENCES orders (id),
    seq      integer NOT NULL CHECK (seq >= 1),
    status   text NOT NULL,
    attempt  integer NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    details  jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (order_id, seq)
);

-- The simulated venues' chain: every transaction they processed, by signature.
-- It lives in PostgreSQL so that it outlives the engine, as a real chain would.
CREATE TABLE IF NOT EXISTS venue_transactions (
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

CREATE INDEX IF NOT EXISTS venue_transactions_by_order ON venue_transactions (order_id);
