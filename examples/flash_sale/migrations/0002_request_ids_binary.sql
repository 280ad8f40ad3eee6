-- Request ids are case-sensitive: "ABC" and "abc" are two requests. The
-- server's default collation compares case-insensitively, which would make
-- the unique key drop the second as a duplicate.
ALTER TABLE orders
    MODIFY request_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL;
ALTER TABLE failed_orders
    MODIFY request_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL;
