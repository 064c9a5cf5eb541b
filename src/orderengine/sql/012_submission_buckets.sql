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
