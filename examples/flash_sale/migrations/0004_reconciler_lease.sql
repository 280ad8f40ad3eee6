-- Leases: one reconciler per sale at a time. The holder renews its row
-- before `expires_at` (MySQL's clock, UTC); anyone may take an expired row
-- over, and `token` grows by one each time the holder changes, so a write
-- fenced by a stale token is refused (see store/lease.rs). The name is the
-- sale's namespace, case-sensitive like the Redis keys it guards.
CREATE TABLE IF NOT EXISTS leases (
    name        VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    holder      VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    token       BIGINT UNSIGNED NOT NULL,
    expires_at  DATETIME(6)     NOT NULL
) ENGINE = InnoDB;
