-- Deletes a key only if it still holds the given bytes, so that a fresher
-- write made in the meantime is never removed.
--
-- KEYS[1]  the key
-- ARGV[1]  the bytes the caller saw (a lease marker or an unreadable entry)
--
-- Returns 1 when deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
