-- Statuses become a type of their own, so that the database names them once and the engine
-- alone says which are terminal: the partial index that repeated it goes, and unfinished
-- orders are found through orders_by_status with the statuses the engine passes in.

CREATE TYPE order_status AS ENUM
    ('pending', 'routing', 'building', 'submitted', 'confirmed', 'failed');

DROP INDEX orders_unfinished;
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ALTER COLUMN status TYPE order_status USING status::order_status;
ALTER TABLE order_events ALTER COLUMN status TYPE order_status USING status::order_status;
