-- Changes who is in a room, for every node: bumps the room's presence
-- version, keeps the member's entry (or drops it), and publishes the change
-- with its version on the room's channel, atomically, so a node can tell
-- which changes a read of the hash already holds.
--
-- KEYS[1]  the room's members hash: member key -> entry; '#' its version
-- KEYS[2]  the room's meta hash (see append.lua): 't' is its topic,
--          'd:NAME' its documents
-- ARGV[1]  'set' (keep the entry), 'del' (drop it), 'drop' (drop it only
--          if ARGV[6]'s node run still serves it; else change nothing),
--          'topic' (ARGV[3] is the room's topic now, '' for none), 'doc'
--          (ARGV[3] is a document's list entry, JSON: kept in the meta
--          hash as 'd:' and its name, or dropped if it says deleted) or
--          '' (typing: nothing kept)
-- ARGV[2]  the member's key
-- ARGV[3]  its entry (for 'set')
-- ARGV[4]  the room's channel ('' to publish nothing)
-- ARGV[5]  the change as the other nodes read it
-- ARGV[6]  for 'drop': the node run, as entries name it
--
-- Returns the room's new version.
local members = KEYS[1]
local op, key, entry, channel, change = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

if op == 'drop' then
  local held = redis.call('HGET', members, key)
  local decoded, entry_held = pcall(cjson.decode, held or '')
  if not decoded or type(entry_held) ~= 'table' or entry_held.node ~= ARGV[6] then
    return 0
  end
  op = 'del'
end
local version = redis.call('HINCRBY', members, '#', 1)
if op == 'set' then
  redis.call('HSET', members, key, entry)
elseif op == 'del' then
  redis.call('HDEL', members, key)
elseif op == 'topic' and entry ~= '' then
  redis.call('HSET', KEYS[2], 't', entry)
elseif op == 'topic' then
  redis.call('HDEL', KEYS[2], 't')
elseif op == 'doc' then
  local doc = cjson.decode(entry)
  if doc.deleted then
    redis.call('HDEL', KEYS[2], 'd:' .. doc.name)
  else
    redis.call('HSET', KEYS[2], 'd:' .. doc.name, entry)
  end
end
if channel ~= '' then
  redis.call('PUBLISH', channel, 'p:' .. version .. ':' .. change)
end
return version
