-- How many channels have members, and how many members they have in all, in one call.
-- KEYS[1]: the channels set; ARGV: prefix. Reply: {channels, members}. Reads every channel's
-- member set (in the same slot on a cluster): O(channels).
local prefix = ARGV[1]
local channels = redis.call('SMEMBERS', KEYS[1])
local members = 0
for _, channel in ipairs(channels) do
  members = members + redis.call('SCARD', prefix .. 'members:' .. channel)
end
return {#channels, members}
