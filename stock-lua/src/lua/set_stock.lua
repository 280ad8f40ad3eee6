-- Sets the sellable stock of one SKU and keeps its sold-out mark in step.
--
-- KEYS[1] stock of the SKU   KEYS[2] the set of sold-out SKUs
-- ARGV[1] units (a non-negative integer)   ARGV[2] the SKU
-- Reply: the new stock.

redis.call('SET', KEYS[1], ARGV[1])
if tonumber(ARGV[1]) > 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
else
  redis.call('SADD', KEYS[2], ARGV[2])
end
return tonumber(ARGV[1])
