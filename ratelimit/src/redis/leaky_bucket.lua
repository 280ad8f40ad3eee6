-- Leaky bucket (GCRA) shared by every app instance, as a meter or a pacer.
-- KEYS[1]  string: the time (microseconds of Redis TIME) at which the bucket
--          is empty again. A missing key is an empty bucket; it expires when
--          the bucket has drained.
-- ARGV[1]  rate: units drained per second (>= 1)
-- ARGV[2]  capacity: bucket size (>= 1)
-- ARGV[3]  n: units poured in (1..capacity for the meter)
-- ARGV[4]  mode: 0 = meter (deny on overflow), 1 = pacer (always book, report the wait)
-- Returns  meter: {1, 0} admitted or {0, retry_after_us} denied (nothing written);
--          pacer: {1, wait_us} booked, the caller sleeps wait_us.

-- Redis < 5 replicates scripts verbatim and refuses writes after TIME unless
-- effects replication is switched on; on Redis >= 7 this call does nothing.
if redis.replicate_commands then redis.replicate_commands() end
-- One clock for every instance, read once: TIME moves while a script runs.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local interval = 1000000 / tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local pacer = ARGV[4] == '1'

local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local next_tat = tat + n * interval

if not pacer then
  local allowed_at = next_tat - capacity * interval
  if allowed_at > now + 1e-6 then
    return {0, math.max(1, math.ceil(allowed_at - now))}
  end
end

-- Live until the bucket has drained (its absence means empty), never 0.
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1)
return {1, math.ceil(tat - now)}
