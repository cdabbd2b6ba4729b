-- Reads a room's log from a seq on: its epoch, its newest seq, and up to a
-- count of messages in order. A room without an epoch gets one here, so
-- that a reader and the first writer agree on it.
--
-- KEYS[1]  the room's meta hash (see append.lua)
-- KEYS[2]  the room's log
-- ARGV[1]  the first seq wanted
-- ARGV[2]  the most messages wanted
-- ARGV[3]  the epoch a room without one starts
--
-- Returns {newest seq, epoch, {{seq, message}, ...}, topic or ''}.
local meta, log = KEYS[1], KEYS[2]
local from, count, fresh = ARGV[1], ARGV[2], ARGV[3]

local state = redis.call('HMGET', meta, 'e', 's', 't')
local epoch, newest, topic = state[1], tonumber(state[2]) or 0, state[3] or ''
if not epoch then
  epoch = fresh
  redis.call('DEL', log)
  redis.call('HSET', meta, 'e', epoch)
end
local found = {}
for _, entry in ipairs(redis.call('XRANGE', log, from .. '-1', '+', 'COUNT', count)) do
  local seq = tonumber(string.match(entry[1], '^(%d+)-'))
  found[#found + 1] = {seq, entry[2][2]}
end
return {newest, epoch, found, topic}
