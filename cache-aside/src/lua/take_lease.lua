-- Reads a cache entry, or takes the lease to fill it when there is no
-- usable entry.
--
-- KEYS[1]  the cache key
-- ARGV[1]  this caller's lease marker (the lease tag, then a random token)
-- ARGV[2]  lease time to live, in milliseconds
-- ARGV[3]  the one-byte tag of a cached value
-- ARGV[4]  the whole "not found" entry
--
-- The tags come from src/entry.rs, so Rust and Lua share one definition.
-- Returns the entry's bytes when the key holds a value, a "not found", or
-- another caller's live lease (lease-shaped and with a TTL). Anything else
-- (no key, the 0.x format, foreign bytes, a lease-shaped entry without a
-- TTL, which this crate never writes) is a miss: ARGV[1] is stored with a
-- TTL of ARGV[2] ms and nil is returned, meaning "the lease is yours"
-- (Lua nil: a null reply in RESP2 and RESP3 alike, where `false` would be
-- a RESP3 boolean).
local current = redis.call('GET', KEYS[1])
if current then
  local tag = string.sub(current, 1, 1)
  if tag == ARGV[3] or current == ARGV[4] then
    return current
  end
  if tag == string.sub(ARGV[1], 1, 1) and #current == #ARGV[1]
      and redis.call('PTTL', KEYS[1]) >= 0 then
    return current
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return nil
