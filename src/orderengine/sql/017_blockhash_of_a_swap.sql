-- A swap on a live cluster counts as expired only once the cluster no longer takes its
-- blockhash: the lastValidBlockHeight kept beside it is Jupiter's word, and a stale one
-- would let a second swap go while the first may still land. Kept with the signature so
-- that an engine reconciling it after a restart can ask. NULL on the simulated chain, and
-- for swaps sent before this was kept (their expiry goes by the block height alone).

ALTER TABLE orders ADD COLUMN tx_blockhash text;
