-- Orders and their events, as the engine first stored them. Idempotent, so that a database
-- created before migrations were recorded adopts this one as already applied.

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
