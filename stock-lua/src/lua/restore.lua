-- Writes back the grants of one SKU after Redis lost its data, from the
-- durable record of them (the app's orders): a request record per grant, so
-- a retry replays its first answer, and each buyer's units, so the per-user
-- limit holds. A request that already has a record keeps it (it is newer
-- than anything restored).
--
-- KEYS[1] units bought per user of the SKU (hash)   KEYS[1+i] request record of grant i
-- ARGV[1] record TTL in milliseconds   ARGV[2] the SKU   ARGV[3] n (0 to 256)
--   then per grant i: ARGV[4i] user id, ARGV[4i+1] quantity,
--   ARGV[4i+2] refunded (0/1), ARGV[4i+3] fingerprint of the request
--   (user and this one item), so a retry of it replays and a different
--   request with its id is a conflict, as before the loss.
-- Reply: the number of records written.

local n = tonumber(ARGV[3])
if not n or n < 0 or n > 256 or #KEYS ~= 1 + n or #ARGV ~= 3 + 4 * n then
  return redis.error_reply('ERR seckill restore: KEYS/ARGV do not match the grant count')
end
local ttl, sku = ARGV[1], ARGV[2]
for i = 1, n do
  local qty = tonumber(ARGV[4 * i + 1])
  if not qty or qty < 1 then
    return redis.error_reply('ERR seckill restore: quantity must be a positive integer')
  end
end
local written = 0
for i = 1, n do
  local req = KEYS[1 + i]
  if redis.call('EXISTS', req) == 0 then
    local user, qty, refunded, fp = ARGV[4 * i], ARGV[4 * i + 1], ARGV[4 * i + 2], ARGV[4 * i + 3]
    redis.call('HSET', req, 'o', 0, 's', '', 'n', 0, 'u', user, 'c', 1, 'q:' .. sku, qty, 'f', fp)
    if refunded == '1' then
      redis.call('HSET', req, 'st', 'r')
    else
      redis.call('HINCRBY', KEYS[1], user, qty)
    end
    redis.call('PEXPIRE', req, ttl)
    written = written + 1
  end
end
return written
