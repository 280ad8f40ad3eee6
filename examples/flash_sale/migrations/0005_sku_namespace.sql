-- Which sale (the Redis namespace of its stock) a SKU belongs to: the
-- reconciler and the stock rebuild after a Redis data loss walk only their
-- own sale's SKUs, not every SKU of a database several sales share.
ALTER TABLE skus
    ADD COLUMN namespace VARCHAR(64) NOT NULL DEFAULT '',
    ADD KEY ix_skus_namespace (namespace);
