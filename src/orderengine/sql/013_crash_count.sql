-- How often working on an order has ended in an unexpected error, on any engine. An order
-- that keeps crashing before its swap is sent ends failed after as many crashes in all as
-- it may have attempts, however many engines share the database and however often they
-- restart: a count kept in one engine's memory let each engine, and each start, crash on
-- it again.
ALTER TABLE orders ADD COLUMN crashes integer NOT NULL DEFAULT 0;
