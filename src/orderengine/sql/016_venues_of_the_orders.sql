-- Which venues the database's orders are for: the simulated ones, or live ones on a real
-- cluster. An engine with venues of the other kind refuses to start on it: an order made
-- for the simulated venues, sent live, would trade real funds (and one sent live, resumed by
-- simulated venues, would be judged by a chain that never saw it). A database that held
-- orders before this table is judged by them: an order sent live keeps the block height its
-- swap could land by, which a simulated one never has.
CREATE TABLE database_venues (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    venues   text NOT NULL CHECK (venues IN ('simulated', 'live'))
);
INSERT INTO database_venues (venues)
SELECT CASE WHEN bool_or(tx_last_valid_block_height IS NOT NULL) THEN 'live' ELSE 'simulated' END
FROM orders HAVING count(*) > 0;
