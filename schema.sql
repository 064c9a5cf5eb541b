-- The whole current schema of orderengine's own tables, as its migrations build it
-- (src/orderengine/sql/, applied by the engine at start). Read it to learn the store;
-- apply it to an empty database with `psql -f schema.sql` and the engine takes the
-- database as up to date. A test checks that this file and the migrations agree.
--
-- The simulated venues keep their chain in a schema of their own, created by them
-- (src/orderengine/venues/chain.sql).

CREATE TYPE order_status AS ENUM
    ('pending', 'routing', 'building', 'submitted', 'confirmed', 'failed');

CREATE TABLE orders (
    id              uuid PRIMARY KEY,
    -- Acceptance order: engines claim orders in it, and listings page by it.
    position        bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    type            text NOT NULL,
    token_in        text NOT NULL,
    token_out       text NOT NULL,
    amount_in       numeric NOT NULL CHECK (amount_in > 0),
    slippage_bps    integer NOT NULL CHECK (slippage_bps > 0),
    status          order_status NOT NULL,
    attempt         integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    -- The seq of the order's latest event; the next status change takes the one after.
    last_seq        integer NOT NULL DEFAULT 1,
    dex             text,
    tx_hash         text,
    -- Until when the sent signature can still land; past it, "not found" means "never".
    tx_expires_at   timestamptz,
    executed_price  numeric,
    amount_out      numeric,
    error           text,
    -- When the next attempt is due, after a failed one; a restart honours it.
    next_attempt_at timestamptz,
    -- The engine working on the order, and until when; another may take it over after.
    lease_owner     uuid,
    lease_expires_at timestamptz,
    -- A limit order's least tokenOut per tokenIn, and when a waiting order gives up.
    limit_price     numeric CHECK (limit_price > 0),
    expires_at      timestamptz,
    -- What a pending order waits for ('price' or 'listing'); NULL when it is due.
    awaits          text CHECK (awaits IN ('price', 'listing')),
    -- The best net price its waiting events last reported.
    best_price      numeric,
    -- Claimed lowest first, then by position: snipers, market orders, crossed limits;
    -- NULL while the order waits or once it has ended, when it is not claimed.
    priority        real,
    -- The owner whose API key created the order (null when no keys are in force).
    owner           text,
    -- Scoped to the owner: two owners may use the same key (orders_idempotency).
    idempotency_key text,
    -- SHA-256 of the canonical order body: a reused key with another body is a conflict.
    request_digest  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- On a live cluster, the block height past which the sent signature can land no more.
    tx_last_valid_block_height bigint,
    -- On a live cluster, the blockhash the sent swap was signed on: asked after before the
    -- swap counts as expired.
    tx_blockhash    text,
    -- When it last became due: accepted, or woken by its price or a listing (null for
    -- orders accepted before this column, which count from created_at).
    due_since       timestamptz DEFAULT now(),
    -- How often working on it ended in an unexpected error, on any engine: past
    -- ORDERENGINE_MAX_ATTEMPTS, an order not yet sent ends failed.
    crashes         integer NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX orders_idempotency ON orders (COALESCE(owner, ''), idempotency_key);
-- Listings by status, and the unfinished orders found at start.
CREATE INDEX orders_by_status ON orders (status, position);
-- An owner's orders: what a key's listing, and its feed's resumption, read.
CREATE INDEX orders_by_owner ON orders (owner, position);
-- The orders engines may claim, in the order they claim them: an order leaves it while an
-- engine holds it, so its status changes meanwhile add nothing to this index.
CREATE INDEX orders_due ON orders (priority, position)
    WHERE priority IS NOT NULL AND lease_owner IS NULL;
-- The orders waiting, by what they wait for, then on each pair by limit: what the price
-- watchers wake, and what the listings wake.
CREATE INDEX orders_waiting ON orders (awaits, token_in, token_out, limit_price)
    WHERE awaits IS NOT NULL;

-- Every status change of every order, appended in the transaction that makes it.
CREATE TABLE order_events (
    order_id uuid NOT NULL REFERENCES orders (id),
    seq      integer NOT NULL CHECK (seq >= 1),
    status   order_status NOT NULL,
    attempt  integer NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    details  jsonb NOT NULL DEFAULT '{}',
    -- Its place in the feed of all orders, given once it is committed (null until then).
    position bigint,
    PRIMARY KEY (order_id, seq)
);
CREATE UNIQUE INDEX order_events_by_position ON order_events (position)
    WHERE position IS NOT NULL;
CREATE INDEX order_events_unpositioned ON order_events (at, order_id, seq)
    WHERE position IS NULL;

-- The feed's sequencer and its read, each one round trip and its own transaction when
-- called alone. Each statement of a volatile function takes a fresh snapshot: the update,
-- run once the lock is held, sees the positions the sequencer before it committed.

-- Give the next positions (the table's largest plus one, two, ...) to at most `most`
-- committed events that have none, in the order of their time, order and seq; how many.
CREATE FUNCTION sequence_feed(most integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    given integer;
BEGIN
    -- One sequencer at a time across the engines: the feed's own advisory lock.
    PERFORM pg_advisory_xact_lock(7207004);
    WITH base AS (
        SELECT COALESCE(max(position), 0) AS last FROM order_events
    ), next AS (
        SELECT order_id, seq,
               (SELECT last FROM base)
               + row_number() OVER (ORDER BY at, order_id, seq) AS position
        FROM (
            SELECT order_id, seq, at FROM order_events
            WHERE position IS NULL ORDER BY at, order_id, seq LIMIT most
        ) AS waiting
    )
    UPDATE order_events AS e SET position = next.position
    FROM next WHERE (e.order_id, e.seq) = (next.order_id, next.seq);
    GET DIAGNOSTICS given = ROW_COUNT;
    RETURN given;
END
$$;

-- Give positions as `sequence_feed(sequenced)` does, then read the first `most` events
-- after `after_position`, each with its order's owner.
CREATE FUNCTION sequenced_feed(after_position bigint, most integer, sequenced integer)
RETURNS TABLE ("position" bigint, owner text, order_id uuid, seq integer,
               status order_status, attempt integer, at timestamptz, details jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM sequence_feed(sequenced);
    RETURN QUERY
        SELECT e.position, o.owner, e.order_id, e.seq, e.status, e.attempt, e.at, e.details
        FROM order_events AS e JOIN orders AS o ON o.id = e.order_id
        WHERE e.position > after_position
        ORDER BY e.position LIMIT most;
END
$$;

-- The token bucket every engine on this database draws execution attempts from.
CREATE TABLE rate_limit (
    name       text PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at timestamptz NOT NULL
);

-- One price watcher per pair (tokenOut per tokenIn), leased by one engine at a time: the
-- best net price it last saw, and the one waiting orders were last told.
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

-- API keys, stored as their SHA-256 only; a revoked key is kept, and its name may be reused.
CREATE TABLE api_keys (
    key_hash   text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

-- Secrets every engine on the database shares: the key that signs stream tokens.
CREATE TABLE engine_secrets (
    name   text PRIMARY KEY,
    secret bytea NOT NULL
);

-- Each key's submissions per minute, counted once for every engine on the database: a
-- client that spreads its orders over several engines is limited as by one.
--
-- Unlogged: a bucket is a rate, not a record. A transaction that writes only unlogged
-- tables commits without waiting for a WAL flush (PostgreSQL's own rule, with
-- synchronous_commit untouched), so a take costs a round trip and no disk; after a crash
-- of the database the buckets are empty, and every key starts again with a full burst.
CREATE UNLOGGED TABLE submission_buckets (
    owner      text PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at timestamptz NOT NULL
);

-- For each owner (distinct), refill its bucket by the database's clock at `per_second` up
-- to `burst` (a new bucket starts with `burst`), then take up to `asked` of its tokens,
-- whole ones only; how many it was granted and the tokens left. Buckets are locked in the
-- owners' order, so engines taking for the same owners at once wait rather than deadlock.
-- A taker whose clock reading is older than the stored one refills nothing (it is served
-- after the refill up to that moment).
CREATE FUNCTION take_submissions(owners text[], asked integer[], per_second float8,
                                 burst float8)
RETURNS TABLE (owner text, granted integer, tokens float8)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    wanted record;
    refilled float8;
BEGIN
    FOR wanted IN
        SELECT a.owner, a.count FROM unnest(owners, asked) AS a (owner, count) ORDER BY a.owner
    LOOP
        INSERT INTO submission_buckets AS b (owner, tokens, updated_at)
        VALUES (wanted.owner, burst, clock_timestamp())
        ON CONFLICT (owner) DO UPDATE SET
            tokens = LEAST(
                burst,
                b.tokens + per_second * GREATEST(
                    0, EXTRACT(EPOCH FROM excluded.updated_at - b.updated_at)
                )::float8
            ),
            updated_at = GREATEST(b.updated_at, excluded.updated_at)
        RETURNING b.tokens INTO refilled;
        owner := wanted.owner;
        granted := LEAST(wanted.count, floor(refilled)::integer);
        tokens := refilled - granted;
        UPDATE submission_buckets AS b SET tokens = take_submissions.tokens
        WHERE b.owner = wanted.owner;
        RETURN NEXT;
    END LOOP;
END
$$;

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

-- Which venues the database's orders are for: an engine with the other kind refuses it.
CREATE TABLE database_venues (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    venues   text NOT NULL CHECK (venues IN ('simulated', 'live'))
);

-- Which migrations this database has had; this file stands for all of them.
CREATE TABLE schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO schema_migrations (version, name) VALUES
    (1, 'orders_and_events'),
    (2, 'order_status_type'),
    (3, 'retry_times_and_expiry'),
    (4, 'leases_and_shared_rate'),
    (5, 'waiting_orders'),
    (6, 'api_keys_and_owners'),
    (7, 'event_feed'),
    (8, 'waiting_orders_by_kind'),
    (9, 'live_expiry'),
    (10, 'feed_in_one_round_trip'),
    (11, 'due_since'),
    (12, 'submission_buckets'),
    (13, 'crash_count'),
    (14, 'claims_walk_the_due_index'),
    (15, 'orders_by_owner'),
    (16, 'venues_of_the_orders'),
    (17, 'blockhash_of_a_swap');
