-- Token bucket shared by every app instance.
-- KEYS[1]  hash {tokens, ts}: tokens left at time ts (microseconds of Redis TIME).
--          A missing key is a full bucket; it expires once the bucket is full again.
-- ARGV[1]  rate: tokens per second (>= 1)
-- ARGV[2]  burst: bucket size (>= 1)
-- ARGV[3]  n: tokens wanted (1..burst)
-- Returns  {1, 0} admitted, or {0, retry_after_us} denied (nothing written).

-- Redis < 5 replicates scripts verbatim and refuses writes after TIME unless
-- effects replication is switched on; on Redis >= 7 this call does nothing.
if redis.replicate_commands then redis.replicate_commands() end
-- One clock for every instance, read once: TIME moves while a script runs.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000000)
  ts = now
end

-- The epsilon absorbs float rounding of the refill (far below one token).
if tokens + 1e-9 < n then
  return {0, math.max(1, math.ceil((n - tokens) * 1000000 / rate))}
end

tokens = tokens - n
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', ts)
-- Live until the bucket is full again (its absence means full), never 0.
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1)
return {1, 0}
