-- Drops the entries of members whose node is gone, each only if it is still
-- the entry that was found (a member that came back meanwhile stays).
--
-- KEYS[1]  the room's members hash
-- ARGV     pairs of member key, entry
local dropped = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
