-- Sliding window log shared by every app instance: at most `limit`
-- admissions in any window of `window` milliseconds.
-- KEYS[1]  sorted set: one member per admitted unit, scored by its time
--          (microseconds of Redis TIME).
-- KEYS[2]  string: the last member number handed out (members stay unique).
--          Both keys share one {hash tag}, so they live in one cluster slot.
-- ARGV[1]  window length in milliseconds (>= 1)
-- ARGV[2]  limit (>= 1)
-- ARGV[3]  n (1..limit)
-- Returns  {1, 0} admitted, or {0, retry_after_us} denied (nothing added).

-- Redis < 5 replicates scripts verbatim and refuses writes after TIME unless
-- effects replication is switched on; on Redis >= 7 this call does nothing.
if redis.replicate_commands then redis.replicate_commands() end
-- One clock for every instance, read once: TIME moves while a script runs.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local window = tonumber(ARGV[1]) * 1000
local limit = tonumber(ARGV[2])
local n = tonumber(ARGV[3])

-- An admission at time a counts until a + window.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])

if count + n > limit then
  -- The (count + n - limit)-th oldest admission has to leave first.
  local rank = count + n - limit - 1
  local oldest = redis.call('ZRANGE', KEYS[1], rank, rank, 'WITHSCORES')
  return {0, math.max(1, math.ceil(tonumber(oldest[2]) + window - now))}
end

local last = redis.call('INCRBY', KEYS[2], n)
for member = last - n + 1, last do
  redis.call('ZADD', KEYS[1], now, member)
end
-- Both keys live one window after the latest admission, never 0.
local ttl = math.ceil(window / 1000) + 1
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {1, 0}
