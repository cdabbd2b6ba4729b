-- Appends one message to a room's log, once: cluster mode's one numbering
-- of a room's messages, atomic because Redis runs a script alone.
--
-- KEYS[1]  the room's meta hash: e = its epoch, s = its newest seq
-- KEYS[2]  the room's log: a stream whose entry ids are the seqs
-- KEYS[3]  the message's idempotency hash (KEYS[1] again when it has no id)
-- ARGV[1]  the message, as the node encoded it
-- ARGV[2]  how many messages the log keeps
-- ARGV[3]  the epoch a room without one starts (a new room, or lost data)
-- ARGV[4]  the channel every node of the room listens on
-- ARGV[5]  seconds an id is remembered; 0 for a message without one
-- ARGV[6]  (a direct message) the other party's channel, published on too
-- ARGV[7]  (a direct message) the conversation's name and a newline, in
--          front of what is published: a party's channel carries all its
--          conversations
--
-- Returns {seq, epoch, 1 if this id was appended before (its seq) else 0}.
local meta, log, once = KEYS[1], KEYS[2], KEYS[3]
local message, keep, fresh, channel, remember =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])

if remember > 0 then
  local before = redis.call('HMGET', once, 'e', 's')
  if before[1] then
    return {tonumber(before[2]), before[1], 1}
  end
end

local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  -- Numbering starts again: whatever log is left belongs to a lost epoch.
  epoch = fresh
  redis.call('DEL', log)
  redis.call('HSET', meta, 'e', epoch)
end
local seq = redis.call('HINCRBY', meta, 's', 1)
redis.call('XADD', log, 'MAXLEN', keep, seq .. '-1', 'm', message)
local published = (ARGV[7] or '') .. seq .. ':' .. epoch .. ':' .. message
redis.call('PUBLISH', channel, published)
if ARGV[6] and ARGV[6] ~= channel then
  redis.call('PUBLISH', ARGV[6], published)
end

if remember > 0 then
  redis.call('HSET', once, 'e', epoch, 's', seq)
  redis.call('EXPIRE', once, remember)
end
return {seq, epoch, 0}
