-- Puts back exactly what one request deducted, once.
--
-- KEYS (n = number of items the client read from the request record):
--   KEYS[1]          the request record (hash)
--   KEYS[2]          the set of sold-out SKUs
--   KEYS[2+i]        stock of item i
--   KEYS[2+n+i]      deduction log of item i (stream)
--   KEYS[2+2n+i]     units bought per user of item i (hash)
-- ARGV:
--   ARGV[1] request id   ARGV[2] record TTL in milliseconds   ARGV[3] n (0 to 64)
--   ARGV[3+i] SKU of item i   ARGV[3+n+i] quantity of item i
-- Reply: { code }
--   0 refunded, 1 already refunded, 2 the request deducted nothing,
--   3 unknown request id (a tombstone is written so a late deduction with
--   this id is cancelled instead of taking stock nobody will refund),
--   -2 the items given do not match the record (the client reads it again).

local req = KEYS[1]
local n = tonumber(ARGV[3])
if not n or n < 0 or n > 64 or #KEYS ~= 2 + 3 * n or #ARGV ~= 3 + 2 * n then
  return redis.error_reply('ERR seckill refund: KEYS/ARGV do not match the item count')
end

local rec = redis.call('HMGET', req, 'o', 'st', 'u', 'c')
if not rec[1] then
  redis.call('HSET', req, 'o', 4, 's', '', 'n', 0)
  redis.call('PEXPIRE', req, ARGV[2])
  return { 3 }
end
if rec[1] == '4' then
  return { 3 }
end
if rec[1] ~= '0' then
  return { 2 }
end
if rec[2] == 'r' then
  return { 1 }
end

-- The record's items are immutable; check the client read them right
-- before writing anything.
if tonumber(rec[4]) ~= n then
  return { -2 }
end
for i = 1, n do
  if redis.call('HGET', req, 'q:' .. ARGV[3 + i]) ~= ARGV[3 + n + i] then
    return { -2 }
  end
end

local user = rec[3]
for i = 1, n do
  local sku, units = ARGV[3 + i], ARGV[3 + n + i]
  local left = redis.call('INCRBY', KEYS[2 + i], units)
  if left > 0 then
    redis.call('SREM', KEYS[2], sku)
  end
  redis.call('XADD', KEYS[2 + n + i], '*', 'r', ARGV[1], 'u', user, 'q', units, 'k', 'r')
  if redis.call('HINCRBY', KEYS[2 + 2 * n + i], user, -tonumber(units)) <= 0 then
    redis.call('HDEL', KEYS[2 + 2 * n + i], user)
  end
end
-- Only the refund state changes: the outcome, the items and the request's
-- fingerprint stay, so a retry of the deduction still replays (or conflicts).
redis.call('HSET', req, 'st', 'r')
return { 0 }
