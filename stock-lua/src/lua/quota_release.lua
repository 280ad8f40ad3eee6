-- Gives back a reservation of quota_reserve.lua, once (the request was
-- refused by every stock bucket, or its units were refunded).
--
-- KEYS (n = number of items the client read from the reservation record):
--   KEYS[1]      the reservation record (hash)
--   KEYS[1+i]    units reserved per user of item i (hash)
-- ARGV: ARGV[1] n (1 to 64)   ARGV[1+i] SKU of item i   ARGV[1+n+i] quantity of item i
-- Reply: 1 released now, 0 nothing to release (no reservation, refused,
--   or released before), -2 the items given do not match the record.

local rec = KEYS[1]
local n = tonumber(ARGV[1])
if not n or n < 1 or n > 64 or #KEYS ~= 1 + n or #ARGV ~= 1 + 2 * n then
  return redis.error_reply('ERR seckill quota_release: KEYS/ARGV do not match the item count')
end
local r = redis.call('HMGET', rec, 'o', 'st', 'u', 'c')
if r[1] ~= '0' or r[2] == 'r' then
  return 0
end
if tonumber(r[4]) ~= n then
  return -2
end
for i = 1, n do
  if redis.call('HGET', rec, 'q:' .. ARGV[1 + i]) ~= ARGV[1 + n + i] then
    return -2
  end
end
for i = 1, n do
  if redis.call('HINCRBY', KEYS[1 + i], r[3], -tonumber(ARGV[1 + n + i])) <= 0 then
    redis.call('HDEL', KEYS[1 + i], r[3])
  end
end
redis.call('HSET', rec, 'st', 'r')
return 1
