-- The flash-sale tables. MySQL is the ledger: Redis decides fast, MySQL keeps
-- what was sold, and its constraints hold even if Redis loses writes.

CREATE TABLE IF NOT EXISTS skus (
    id          BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    name        VARCHAR(200)    NOT NULL,
    price_cents BIGINT UNSIGNED NOT NULL,
    -- Units not yet sold according to MySQL; the consumer decrements it with
    -- `WHERE stock >= ?`, so it never goes below zero.
    stock       BIGINT UNSIGNED NOT NULL,
    updated_at  TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS orders (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    -- A redelivered or republished order hits this key: already done.
    request_id  VARCHAR(64)     NOT NULL,
    user_id     BIGINT UNSIGNED NOT NULL,
    sku_id      BIGINT UNSIGNED NOT NULL,
    quantity    INT UNSIGNED    NOT NULL,
    created_at  TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY uq_orders_request (request_id),
    -- The per-user limit is one order per SKU, also when Redis forgets.
    UNIQUE KEY uq_orders_user_sku (user_id, sku_id),
    KEY ix_orders_sku (sku_id)
) ENGINE = InnoDB;

-- Orders MySQL refused (no stock left, or the user already has one); each
-- was refunded in Redis.
CREATE TABLE IF NOT EXISTS failed_orders (
    request_id  VARCHAR(64)     NOT NULL PRIMARY KEY,
    user_id     BIGINT UNSIGNED NOT NULL,
    sku_id      BIGINT UNSIGNED NOT NULL,
    quantity    INT UNSIGNED    NOT NULL,
    reason      VARCHAR(32)     NOT NULL,
    created_at  TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB;
