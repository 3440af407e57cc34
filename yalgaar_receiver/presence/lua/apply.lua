-- Apply one bind or unbind after settling what is due.
-- ARGV[5..10]: action, channel, uuid, timestamp ('' for none), the grace deadline ('' for
-- none), the member ttl deadline ('' for none). Status 'applied' or 'stale'.
local action, c, u, ts = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local due_grace, due_ttl = ARGV[9], ARGV[10]
sweep()
-- The sweep above is bounded; this record's own deadline is settled first in any case.
local own = redis.call('ZSCORE', DUE, ref(c, u))
if own and tonumber(own) <= tonumber(now) then settle(ref(c, u)) end
local s = load(c, u)
if ts ~= '' and s.mark ~= '' and tonumber(ts) < tonumber(s.mark) then
  out[1] = 'stale'
  return out
end
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
return out
