-- An owner's orders, in the order of their positions: what `GET /api/orders` lists for a key,
-- and what the feed of all orders resumes from for it. Without this index both walked the
-- orders of every owner to find one's: an owner with few orders among 300 000 cost a scan of
-- all of them (about 40 ms), at every page and every resumption.
CREATE INDEX orders_by_owner ON orders (owner, position);
