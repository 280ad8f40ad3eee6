-- Reads a cache entry, or takes the lease to fill it when it is absent.
--
-- KEYS[1]  the cache key
-- ARGV[1]  this caller's lease marker ("l" followed by a random token)
-- ARGV[2]  lease time to live, in milliseconds
--
-- Returns the entry's bytes when the key holds anything (a value, a
-- not-found marker, or another caller's lease marker); returns nil after
-- storing ARGV[1] with a TTL of ARGV[2] ms, meaning "the lease is yours".
local current = redis.call('GET', KEYS[1])
if current then
  return current
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
