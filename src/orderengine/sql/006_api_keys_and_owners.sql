-- API keys and the owners of orders: a key stored as its SHA-256 only, revocable; each order
-- belongs to the owner whose key created it, and an idempotency key is scoped to its owner.
-- A secret the engines share signs the stream tokens browsers follow their orders with.

CREATE TABLE api_keys (
    key_hash   text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

ALTER TABLE orders ADD COLUMN owner text;
ALTER TABLE orders DROP CONSTRAINT orders_idempotency_key_key;
CREATE UNIQUE INDEX orders_idempotency ON orders (COALESCE(owner, ''), idempotency_key);

CREATE TABLE engine_secrets (
    name   text PRIMARY KEY,
    secret bytea NOT NULL
);
