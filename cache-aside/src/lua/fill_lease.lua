-- Stores a loaded entry only while the caller still holds the lease.
--
-- KEYS[1]  the cache key
-- ARGV[1]  the lease marker the caller stored with take_lease.lua
-- ARGV[2]  the entry to store
-- ARGV[3]  the entry's time to live, in milliseconds
--
-- Returns 1 when stored; 0 when the lease is gone (invalidated, overwritten
-- by a writer, or expired), in which case nothing is written.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
