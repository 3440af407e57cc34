-- The rules of MemoryPresenceStore, run atomically inside Redis: two processes applying events
-- for one channel at once are serialised by the server, so each transition is returned to exactly
-- one of them. Shared by apply.lua and sweep.lua, which the store prefixes with this file.
--
-- Layout under the prefix (ARGV[1]; on Redis Cluster a hash tag, so that every key is in one
-- slot; KEYS[1] is the due key, declared so that a cluster runs the script on its node):
--   members:<channel>  SET of uuids (departures in their grace time included)
--   state:<channel>    HASH uuid -> "<present 0|1><pending 0|1>:<mark or empty>"
--   due                ZSET "<len(channel)>:<channel><uuid>" -> when a sweep has work there
--   channels           SET of channels with at least one member
-- Times come in as Python reprs of floats and are stored as given: Lua's tostring keeps only 14
-- digits, which would round sub-millisecond timestamps.
--
-- ARGV: prefix, now, when a departed uuid's watermark is forgotten, the most due entries one
-- call settles. Replies: {status, kind, channel, uuid, kind, channel, uuid, ...}.
local prefix = ARGV[1]
local now = ARGV[2]
local due_forget = ARGV[3]
local limit = tonumber(ARGV[4])
local DUE = KEYS[1]
local CHANNELS = prefix .. 'channels'
local out = {'applied'}

local function mkey(c) return prefix .. 'members:' .. c end
local function skey(c) return prefix .. 'state:' .. c end
local function ref(c, u) return #c .. ':' .. c .. u end
local function unref(r)
  local colon = string.find(r, ':', 1, true)
  local n = tonumber(string.sub(r, 1, colon - 1))
  return string.sub(r, colon + 1, colon + n), string.sub(r, colon + n + 1)
end
local function load(c, u)
  local raw = redis.call('HGET', skey(c), u)
  if not raw then return {present = false, pending = false, mark = ''} end
  return {present = string.sub(raw, 1, 1) == '1', pending = string.sub(raw, 2, 2) == '1',
          mark = string.sub(raw, 4)}
end
local function save(c, u, s)
  redis.call('HSET', skey(c), u,
    (s.present and '1' or '0') .. (s.pending and '1' or '0') .. ':' .. s.mark)
end
local function schedule(c, u, due)
  if due == '' then redis.call('ZREM', DUE, ref(c, u))
  else redis.call('ZADD', DUE, due, ref(c, u)) end
end
local function emit(kind, c, u)
  out[#out + 1] = kind; out[#out + 1] = c; out[#out + 1] = u
end
local function retire(c, u, s)
  s.present = false; s.pending = false
  if s.mark == '' then
    redis.call('HDEL', skey(c), u)
    redis.call('ZREM', DUE, ref(c, u))
  else
    save(c, u, s)
    schedule(c, u, due_forget)
  end
end
local function depart(c, u, s)
  redis.call('SREM', mkey(c), u)
  emit('member_left', c, u)
  if redis.call('SCARD', mkey(c)) == 0 then
    redis.call('SREM', CHANNELS, c)
    emit('channel_vacated', c, u)
  end
  retire(c, u, s)
end
local function settle(r)
  local c, u = unref(r)
  local s = load(c, u)
  if s.present then
    depart(c, u, s)
  else
    redis.call('HDEL', skey(c), u)
    redis.call('ZREM', DUE, r)
  end
end
local function sweep()
  local due = redis.call('ZRANGEBYSCORE', DUE, '-inf', now, 'LIMIT', 0, limit)
  for _, r in ipairs(due) do settle(r) end
  return #due
end
