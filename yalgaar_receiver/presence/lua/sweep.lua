-- Settle what is due (common.lua's sweep); the status is how many entries it settled.
out[1] = tostring(sweep())
return out
