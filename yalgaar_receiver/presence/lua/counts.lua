-- How many channels have members, and how many members they have in all, in one call.
-- ARGV: prefix. Reply: {channels, members}. Reads every channel's member set: O(channels).
local prefix = ARGV[1]
local channels = redis.call('SMEMBERS', prefix .. 'channels')
local members = 0
for _, channel in ipairs(channels) do
  members = members + redis.call('SCARD', prefix .. 'members:' .. channel)
end
return {#channels, members}
