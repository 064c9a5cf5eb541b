-- The feed's sequencer, and the read of the feed's newest events, as functions: giving
-- positions was four round trips (BEGIN, the lock, the update, COMMIT), and reading what
-- they gave one more. Called alone, each is its own transaction, so the sequencer's lock is
-- held until the positions it gave are committed. Each statement of a volatile function
-- takes a fresh snapshot: the update, run once the lock is held, sees the positions the
-- sequencer before it committed, and the read sees those and its own.

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
