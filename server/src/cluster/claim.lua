-- Claims a nick for a session, for every node: granted (1) if no session
-- holds it or this session already does (on this node run or another: a
-- session moving here takes its claim along), which makes this node run
-- its holder under a renewed lease; taken (0) if another session holds it.
--
-- KEYS[1] the nick's key (its folded form in braces: its own hash slot)
-- ARGV[1] the holder: a digest of the session's token, ':', the node run
-- ARGV[2] the lease in milliseconds, renewed by the node while it holds it
local holder = redis.call('GET', KEYS[1])
local session = string.match(ARGV[1], '^[^:]*:')
if holder == false or string.sub(holder, 1, #session) == session then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
