-- Deletes a session's record, only if this node run still owns it (a
-- session that moved on is another's to end).
--
-- KEYS[1]  the session's record
-- ARGV[1]  the node run letting it go
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
