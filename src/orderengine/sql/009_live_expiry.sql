-- A swap on a live cluster expires by block height, not by time: its blockhash's
-- lastValidBlockHeight, kept with its signature so that an engine reconciling it after a
-- restart knows when it can land no more. NULL for swaps on the simulated chain.

ALTER TABLE orders ADD COLUMN tx_last_valid_block_height bigint;
