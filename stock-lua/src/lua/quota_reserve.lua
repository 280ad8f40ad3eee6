-- Reserves a buyer's per-user quota for one request, all items or none
-- (sharded stock: the quota lives in the buyer's quota bucket, the units in
-- whichever stock bucket grants them).
--
-- KEYS (n = number of items, all keys share the quota bucket's {hash tag}):
--   KEYS[1]      the reservation record (hash): outcome, user, items,
--                fingerprint, release state
--   KEYS[1+i]    units reserved per user of item i (hash: user -> units)
-- ARGV:
--   ARGV[1] request id   ARGV[2] user id   ARGV[3] record TTL in milliseconds
--   ARGV[4] per-user limit per SKU (at least 1)   ARGV[5] n (1 to 64)
--   ARGV[6] fingerprint of the request
--   ARGV[6+i] SKU of item i   ARGV[6+n+i] quantity of item i
-- Reply: { code, replayed, sku, number }
--   code 0 reserved, 3 limit exceeded (number = units already reserved);
--   replayed 0 decided now, 1 stored outcome of this request, 2 stored
--   outcome of a different request with this id (nothing changed).
-- As in deduct.lua, every check comes before the first write.

local rec = KEYS[1]
local n = tonumber(ARGV[5])
if not n or n < 1 or n > 64 or #KEYS ~= 1 + n or #ARGV ~= 6 + 2 * n then
  return redis.error_reply('ERR seckill quota_reserve: KEYS/ARGV do not match the item count')
end
local fp = ARGV[6]

local seen = redis.call('HMGET', rec, 'o', 's', 'n', 'f')
if seen[1] then
  return { tonumber(seen[1]), seen[4] == fp and 1 or 2, seen[2] or '', tonumber(seen[3]) or 0 }
end

local user, ttl, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
for i = 1, n do
  local qty = tonumber(ARGV[6 + n + i])
  if not qty or qty < 1 then
    return redis.error_reply('ERR seckill quota_reserve: quantity must be a positive integer')
  end
  local held = redis.call('HGET', KEYS[1 + i], user) or '0'
  if tonumber(held) + qty > limit then
    redis.call('HSET', rec, 'o', 3, 's', ARGV[6 + i], 'n', held, 'u', user, 'f', fp)
    redis.call('PEXPIRE', rec, ttl)
    return { 3, 0, ARGV[6 + i], tonumber(held) }
  end
end

redis.call('HSET', rec, 'o', 0, 's', '', 'n', 0, 'u', user, 'f', fp, 'c', n)
for i = 1, n do
  redis.call('HINCRBY', KEYS[1 + i], user, ARGV[6 + n + i])
  redis.call('HSET', rec, 'q:' .. ARGV[6 + i], ARGV[6 + n + i])
end
redis.call('PEXPIRE', rec, ttl)
return { 0, 0, '', 0 }
