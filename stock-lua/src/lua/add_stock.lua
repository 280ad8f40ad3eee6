-- Adds units to the stock of one SKU (restocking during a sale) and clears
-- its sold-out mark.
--
-- KEYS[1] stock of the SKU   KEYS[2] the set of sold-out SKUs
-- ARGV[1] units to add (a positive integer)   ARGV[2] the SKU
-- ARGV[3] the largest stock allowed
-- Reply: { 0, new stock } or { 1, current stock } when the sum would pass the maximum.

local now = tonumber(redis.call('GET', KEYS[1]) or '0')
if not now then
  return redis.error_reply('ERR seckill add_stock: stock key does not hold an integer')
end
if now + tonumber(ARGV[1]) > tonumber(ARGV[3]) then
  return { 1, now }
end
local left = redis.call('INCRBY', KEYS[1], ARGV[1])
if left > 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
end
return { 0, left }
