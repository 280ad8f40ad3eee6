-- Sliding window log shared by every app instance: at most `limit` permits
-- admitted in any window of `window` milliseconds, exactly.
-- KEYS[1]  sorted set, one member per admitted call (not per permit):
--          score  = the call's admission time, microseconds of Redis TIME,
--                   strictly increasing within the key;
--          member = the running total (modulo 2^52) of permits admitted by
--                   this key up to and including this call (so a call's
--                   permits are its member minus the previous member's).
--          The newest member that has left the window stays as the base of
--          the running total; older ones are removed, at most CLEANUP per call.
-- ARGV[1]  window length in milliseconds (1 to 31536000000)
-- ARGV[2]  limit (1 to 4294967295)
-- ARGV[3]  n, the permits asked (1 to limit)
-- Returns  {1, 0} admitted, or {0, retry_after_us} denied (no member added).
--
-- Work per call: a handful of O(log m) sorted-set commands (m = members,
-- at most the calls admitted in one window, plus CLEANUP leftovers), and on
-- a denial a binary search of at most 64 ZRANGE probes; it never depends on
-- `limit` or `n`. All reads come before the first write, and the one write
-- that creates the key is followed by its PEXPIRE, so a script error (a key
-- of the wrong type, out of memory) never leaves a key without expiry.

local CLEANUP = 64

-- Redis < 5 replicates scripts verbatim and refuses writes after TIME unless
-- effects replication is switched on; on Redis >= 7 this call does nothing.
if redis.replicate_commands then redis.replicate_commands() end
-- One clock for every instance, read once: TIME moves while a script runs.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local window = tonumber(ARGV[1]) * 1000
local limit = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local key = KEYS[1]

local function int(x)
  return string.format('%d', x)
end

-- The newest call: the running total and the last admission time.
local total, last = 0, nil
local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if newest[1] then
  total = tonumber(newest[1])
  last = tonumber(newest[2])
end

-- An admission at time a counts until a + window: the newest call admitted
-- at or before now - window has left, and so has every call before it. That
-- member is the base: the permits still in the window are total - base.
-- Members are only ever removed below a base member, which stays, so a key
-- with no member left the window still holds its first call, whose base is 0.
local base, gone_rank = 0, nil
local gone = redis.call('ZREVRANGEBYSCORE', key, int(now - window), '-inf', 'LIMIT', 0, 1)
if gone[1] then
  base = tonumber(gone[1])
  gone_rank = redis.call('ZRANK', key, gone[1])
end

-- Running totals are kept modulo 2^52, so they stay exact in Lua's doubles
-- however long a busy key lives; the permits in the window (at most `limit`,
-- below 2^32) are differences modulo 2^52.
local M = 4503599627370496
local count = (total - base) % M

if count + n > limit then
  -- The earliest call whose departure leaves room: the first live member
  -- whose running total is at least count + n - limit past the base.
  -- Running totals grow with rank, so a binary search over ranks finds it.
  local need = count + n - limit
  local lo = (gone_rank or -1) + 1
  local hi = redis.call('ZCARD', key) - 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local at = redis.call('ZRANGE', key, mid, mid)
    if (tonumber(at[1]) - base) % M >= need then
      hi = mid
    else
      lo = mid + 1
    end
  end
  local leaves = redis.call('ZRANGE', key, lo, lo, 'WITHSCORES')
  if gone_rank and gone_rank > 0 then
    redis.call('ZREMRANGEBYRANK', key, 0, math.min(gone_rank, CLEANUP) - 1)
  end
  return {0, math.max(1, math.ceil(tonumber(leaves[2]) + window - now))}
end

-- Scores strictly increase within a key (if Redis's clock steps back, new
-- calls are stamped just after the last one: they then count a little
-- longer, never shorter).
local stamp = now
if last and stamp <= last then
  stamp = last + 1
end
if gone_rank and gone_rank > 0 then
  redis.call('ZREMRANGEBYRANK', key, 0, math.min(gone_rank, CLEANUP) - 1)
end
redis.call('ZADD', key, int(stamp), int((total + n) % M))
-- The key lives one window after its latest admission, never 0.
redis.call('PEXPIRE', key, math.ceil((stamp + window - now) / 1000) + 1)
return {1, 0}
