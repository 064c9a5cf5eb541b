-- Several engines on one database: an order is worked on only by the engine holding its
-- lease, and every engine draws execution attempts from one token bucket.

ALTER TABLE orders ADD COLUMN lease_owner uuid;
ALTER TABLE orders ADD COLUMN lease_expires_at timestamptz;

CREATE TABLE rate_limit (
    name       text PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at timestamptz NOT NULL
);
