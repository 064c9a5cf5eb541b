-- The simulated chain: the blockhashes it issued and every transaction it took, by signature.
-- It lives in a schema of its own, apart from the engine's tables, and outlives the engine
-- as a real chain would. Idempotent: applied when the chain is opened and the fingerprint
-- of this file in chain.schema is not this file's (its statements take locks that would stop
-- every engine's swaps behind any transaction reading the chain, even when they change
-- nothing).

CREATE SCHEMA IF NOT EXISTS chain;

CREATE TABLE IF NOT EXISTS chain.schema (
    single      boolean PRIMARY KEY DEFAULT true CHECK (single),
    fingerprint text NOT NULL
);

-- Earlier versions kept the transactions beside the engine's tables as venue_transactions.
ALTER TABLE IF EXISTS public.venue_transactions SET SCHEMA chain;
ALTER TABLE IF EXISTS chain.venue_transactions RENAME TO transactions;
ALTER INDEX IF EXISTS chain.venue_transactions_by_order RENAME TO transactions_by_order;

-- Every blockhash the chain issued: a transaction built on one can land until it expires.
CREATE TABLE IF NOT EXISTS chain.blockhashes (
    blockhash  text PRIMARY KEY,
    issued_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL
);

-- Every transaction the chain took, recorded when it was sent, with the outcome decided then:
-- landed (with the amounts) or rejected (with the reason), effective from lands_at.
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

-- Earlier versions recorded a transaction only when it landed, and knew no blockhashes:
-- their rows landed no later than this upgrade.
ALTER TABLE chain.transactions
    ADD COLUMN IF NOT EXISTS blockhash text,
    ADD COLUMN IF NOT EXISTS expires_at timestamptz,
    ADD COLUMN IF NOT EXISTS lands_at timestamptz NOT NULL DEFAULT now();

CREATE INDEX IF NOT EXISTS transactions_by_order ON chain.transactions (order_id);

-- Every pool a venue listed for a new pair: the token, the token it is priced in, the price
-- (quote_token per token) and the quote_token side of its liquidity. A venue lists a pair
-- once, whichever way round it is named; the venues of every engine on the chain learn it.
CREATE TABLE IF NOT EXISTS chain.listings (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dex         text NOT NULL,
    token       text NOT NULL,
    quote_token text NOT NULL CHECK (quote_token <> token),
    price       numeric NOT NULL CHECK (price > 0),
    liquidity   numeric NOT NULL CHECK (liquidity > 0),
    pool        text NOT NULL,
    listed_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE UNIQUE INDEX IF NOT EXISTS listings_by_pair
    ON chain.listings (dex, least(token, quote_token), greatest(token, quote_token));

-- The seed of the market's drift, one for the chain: the first engine to open the chain
-- stores it (ORDERENGINE_SEED, or a random one), and every engine drifts its prices from it.
CREATE TABLE IF NOT EXISTS chain.market (
    single boolean PRIMARY KEY DEFAULT true CHECK (single),
    seed   bigint NOT NULL
);

-- What the last swap left of each pool: its reserves (in its base and quote tokens) and when
-- it settled, in seconds since the Unix epoch on the engines' clocks. A swap locks its pool's
-- row while it is decided and recorded; a row without reserves is a pool no swap moved yet.
CREATE TABLE IF NOT EXISTS chain.pools (
    pool          text PRIMARY KEY,
    dex           text NOT NULL,
    base_reserve  numeric CHECK (base_reserve > 0),
    quote_reserve numeric CHECK (quote_reserve > 0),
    settled_at    double precision
);

-- How many swaps each pool has settled: of two readings of a pool, the newer has more,
-- whatever the clocks of the engines that wrote them said.
ALTER TABLE chain.pools ADD COLUMN IF NOT EXISTS swaps bigint NOT NULL DEFAULT 0;
