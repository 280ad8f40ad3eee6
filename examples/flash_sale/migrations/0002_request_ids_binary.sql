-- Request ids are case-sensitive: "ABC" and "abc" are two requests. The
-- server's default collation compares case-insensitively, which would make
-- the unique key drop the second as a duplicate. (A binary collation makes
-- the MySQL protocol flag the column as binary: queries read it back with
-- `CAST(request_id AS CHAR)`.)
ALTER TABLE orders
    MODIFY request_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE failed_orders
    MODIFY request_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
