-- The per-user limit is N units per SKU, across a buyer's orders, not one
-- order per SKU: the unique key (user_id, sku_id) gives way to a plain index,
-- and each SKU records the limit its sale runs with. The consumer sums a
-- buyer's units under the SKU's row lock, so the check holds even if Redis
-- loses writes in a failover.
ALTER TABLE skus
    ADD COLUMN per_user_limit BIGINT UNSIGNED NOT NULL DEFAULT 1;
ALTER TABLE orders
    DROP INDEX uq_orders_user_sku,
    ADD KEY ix_orders_user_sku (user_id, sku_id);
