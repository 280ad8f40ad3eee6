-- Fixed window counter shared by every app instance; windows are aligned to
-- the Unix epoch of Redis TIME, so every instance agrees where they start.
-- KEYS[1]  hash {w, c}: the current window's number and its count.
-- ARGV[1]  window length in milliseconds (>= 1)
-- ARGV[2]  limit per window (>= 1)
-- ARGV[3]  n (1..limit)
-- Returns  {1, 0} admitted, or {0, retry_after_us} denied (nothing written).

-- Redis < 5 replicates scripts verbatim and refuses writes after TIME unless
-- effects replication is switched on; on Redis >= 7 this call does nothing.
if redis.replicate_commands then redis.replicate_commands() end
-- One clock for every instance, read once: TIME moves while a script runs.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local window = tonumber(ARGV[1]) * 1000
local limit = tonumber(ARGV[2])
local n = tonumber(ARGV[3])

local number = math.floor(now / window)
local window_end = (number + 1) * window
local state = redis.call('HMGET', KEYS[1], 'w', 'c')
local count = 0
if tonumber(state[1]) == number then
  count = tonumber(state[2]) or 0
end

if count + n > limit then
  return {0, math.max(1, window_end - now)}
end

redis.call('HSET', KEYS[1], 'w', number, 'c', count + n)
if count == 0 then
  -- Expiry set once, when the window's count is created (re-arming it on
  -- every hit would keep a busy key alive forever); never 0.
  redis.call('PEXPIRE', KEYS[1], math.ceil((window_end - now) / 1000) + 1)
end
return {1, 0}
