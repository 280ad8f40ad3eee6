-- Drops the oldest entries of one SKU's deduction log, at most a bounded
-- number per call, so one call never blocks Redis on a huge log.
--
-- KEYS[1] the deduction log of the SKU (stream)
-- ARGV[1] entry id: entries with a smaller id are dropped
-- ARGV[2] the most entries to drop in this call (1 to 10000)
-- Reply: { dropped, more } with more = 1 when entries below ARGV[1] remain.

local limit = tonumber(ARGV[2])
if not limit or limit < 1 or limit > 10000 then
  return redis.error_reply('ERR seckill trim_log: the batch size must be 1 to 10000')
end
-- One entry past the batch tells where the batch ends (stream ids cannot
-- be counted on: the next id after the batch is the next entry's id).
local page = redis.call('XRANGE', KEYS[1], '-', '(' .. ARGV[1], 'COUNT', limit + 1)
if #page <= limit then
  return { redis.call('XTRIM', KEYS[1], 'MINID', '=', ARGV[1]), 0 }
end
return { redis.call('XTRIM', KEYS[1], 'MINID', '=', page[limit + 1][1]), 1 }
