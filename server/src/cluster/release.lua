-- Lets a nick go, only if the session letting go still holds it through
-- this node run (a late release never frees a nick another session
-- claimed since, nor one its session took along to another node).
--
-- KEYS[1] the nick's key; ARGV[1] the holder that lets go
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
