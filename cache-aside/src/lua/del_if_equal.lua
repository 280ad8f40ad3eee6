-- Deletes a key only if it still holds the given bytes, so that a fresher
-- write made in the meantime is never removed.
--
-- KEYS[1]  the key
-- ARGV[1]  the bytes the caller saw (a lease marker or an unreadable entry)
-- ARGV[2]  "1": delete only when the key has no TTL (an orphaned
--          lease-shaped entry); "0": whatever its TTL
--
-- Returns 1 when deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1]
    and (ARGV[2] ~= '1' or redis.call('PTTL', KEYS[1]) == -1) then
  return redis.call('DEL', KEYS[1])
end
return 0
