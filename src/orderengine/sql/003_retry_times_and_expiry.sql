-- When an order's next attempt is due, so that a restart or a sweep honours the delay the
-- client was told; and until when a sent signature can still land, so that reconciliation
-- knows when "not found" has become "never".

ALTER TABLE orders ADD COLUMN next_attempt_at timestamptz;
ALTER TABLE orders ADD COLUMN tx_expires_at timestamptz;
