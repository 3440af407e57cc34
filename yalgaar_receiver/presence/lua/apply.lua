-- Apply binds and unbinds in order, after settling what is due.
-- ARGV[5], ARGV[6]: the grace deadline and the member ttl deadline ('' for none); then four
-- arguments per update: action, channel, uuid, timestamp ('' for none). An update older than
-- one already applied to its (channel, uuid) changes nothing.
local due_grace, due_ttl = ARGV[5], ARGV[6]

local function apply(action, c, u, ts)
  -- The sweep is bounded; this record's own deadline is settled first in any case.
  local own = redis.call('ZSCORE', DUE, ref(c, u))
  if own and tonumber(own) <= tonumber(now) then settle(ref(c, u)) end
  local s = load(c, u)
  if ts ~= '' and s.mark ~= '' and tonumber(ts) < tonumber(s.mark) then return end
  if ts ~= '' then s.mark = ts end
  if action == 'bind' then
    if not s.present then
      redis.call('SADD', mkey(c), u)
      s.present = true
      emit('member_joined', c, u)
      if redis.call('SCARD', mkey(c)) == 1 then
        redis.call('SADD', CHANNELS, c)
        emit('channel_occupied', c, u)
      end
    end
    s.pending = false
    save(c, u, s)
    schedule(c, u, due_ttl)
  elseif not s.present then
    retire(c, u, s)
  elseif s.pending then
    save(c, u, s)
  elseif due_grace ~= '' then
    s.pending = true
    save(c, u, s)
    schedule(c, u, due_grace)
  else
    depart(c, u, s)
  end
end

sweep()
for i = 7, #ARGV, 4 do apply(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]) end
return out
