-- Decides one purchase request, all or nothing.
--
-- KEYS (n = number of items, all keys share the namespace's {hash tag}):
--   KEYS[1]          the request record (hash): outcome, user, items, refund
--                    state, and the request's fingerprint (field f)
--   KEYS[2]          the set of sold-out SKUs
--   KEYS[2+i]        stock of item i (string holding an integer)
--   KEYS[2+n+i]      deduction log of item i (stream)
--   KEYS[2+2n+i]     units bought per user of item i (hash: user -> units)
-- ARGV:
--   ARGV[1] request id   ARGV[2] user id   ARGV[3] record TTL in milliseconds
--   ARGV[4] per-user limit per SKU (0 = none)   ARGV[5] n (1 to 64)
--   ARGV[6] fingerprint of the request (digest of user and sorted items)
--   ARGV[6+i] SKU of item i   ARGV[6+n+i] quantity of item i
-- Reply: { code, replayed, sku, number }
--   replayed: 0 decided now, 1 the stored outcome of this same request,
--   2 the stored outcome of a *different* request with this id (conflict;
--   nothing changed). A record without a fingerprint (a refund's tombstone,
--   or a record written before fingerprints existed) replays as 1.
--   code 0 deducted, 1 insufficient (number = available), 2 sold out,
--   3 limit exceeded (number = units already bought), 4 cancelled by an earlier refund,
--   -1 unknown SKU (no stock was ever set; nothing is written).
--
-- Order matters: the request record is checked first, then every limit and
-- every stock, and only then is anything written. A script is atomic but is
-- never rolled back, so no write may happen before the last check passed, and
-- no Lua error may be possible after the first write.

local req = KEYS[1]
local n = tonumber(ARGV[5])
if not n or n < 1 or n > 64 or #KEYS ~= 2 + 3 * n or #ARGV ~= 6 + 2 * n then
  return redis.error_reply('ERR seckill deduct: KEYS/ARGV do not match the item count')
end

local fp = ARGV[6]

-- 1. A request id that was already decided gets its first outcome back,
-- flagged as a conflict when the stored request differs from this one.
local seen = redis.call('HMGET', req, 'o', 's', 'n', 'f')
if seen[1] then
  local same = (not seen[4]) or seen[4] == fp
  return { tonumber(seen[1]), same and 1 or 2, seen[2] or '', tonumber(seen[3]) or 0 }
end

local ttl = ARGV[3]
local user = ARGV[2]
local limit = tonumber(ARGV[4])
local skus, qty_text, qty = {}, {}, {}
for i = 1, n do
  skus[i] = ARGV[6 + i]
  qty_text[i] = ARGV[6 + n + i]
  qty[i] = tonumber(qty_text[i])
  if not qty[i] or qty[i] < 1 then
    return redis.error_reply('ERR seckill deduct: quantity must be a positive integer')
  end
end

-- Records a refusal so a retry of this request id gets the same answer.
local function refuse(code, sku, number_text)
  redis.call('HSET', req, 'o', code, 's', sku, 'n', number_text, 'u', user, 'f', fp)
  redis.call('PEXPIRE', req, ttl)
  return { code, 0, sku, tonumber(number_text) }
end

-- 2. The per-user limit, for every item.
if limit and limit > 0 then
  for i = 1, n do
    local bought = redis.call('HGET', KEYS[2 + 2 * n + i], user) or '0'
    if tonumber(bought) + qty[i] > limit then
      return refuse(3, skus[i], bought)
    end
  end
end

-- 3. The stock of every item. Nothing has been written yet.
for i = 1, n do
  local left = redis.call('GET', KEYS[2 + i])
  if not left then
    return { -1, 0, skus[i], 0 }
  end
  local units = tonumber(left)
  if not units then
    return redis.error_reply('ERR seckill deduct: stock key does not hold an integer')
  end
  if units <= 0 then
    return refuse(2, skus[i], '0')
  end
  if units < qty[i] then
    return refuse(1, skus[i], left)
  end
end

-- 4. Every check passed: write everything.
local record = { 'o', 0, 's', '', 'n', 0, 'u', user, 'c', n, 'f', fp }
for i = 1, n do
  local left = redis.call('DECRBY', KEYS[2 + i], qty_text[i])
  if left <= 0 then
    redis.call('SADD', KEYS[2], skus[i])
  end
  redis.call('XADD', KEYS[2 + n + i], '*', 'r', ARGV[1], 'u', user, 'q', qty_text[i], 'k', 'd')
  redis.call('HINCRBY', KEYS[2 + 2 * n + i], user, qty_text[i])
  record[#record + 1] = 'q:' .. skus[i]
  record[#record + 1] = qty_text[i]
end
redis.call('HSET', req, unpack(record))
redis.call('PEXPIRE', req, ttl)
return { 0, 0, '', 0 }
