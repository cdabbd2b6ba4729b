-- Claims a nick for a session, for every node: granted (1) if no session
-- holds it or this one already does (its lease is then renewed), taken (0)
-- if another holds it.
--
-- KEYS[1] the nick's key (its folded form in braces: its own hash slot)
-- ARGV[1] the holder: a digest of the session's token
-- ARGV[2] the lease in milliseconds, renewed by the node while it holds it
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
