-- Renews a lease so a long step (a big download) is not taken over while it still runs.
-- KEYS[1]  due schedule
-- ARGV[1]  key prefix
-- ARGV[2]  job id
-- ARGV[3]  fence the caller holds
-- ARGV[4]  the claim's token
-- ARGV[5]  lease length in ms from now
-- Returns 1 if renewed, 0 if the lease was lost.
local job = prefix .. 'job:' .. ARGV[2]
local lease = redis.call('HMGET', job, 'fence', 'token')
if lease[1] ~= ARGV[3] or lease[2] ~= ARGV[4] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now_ms() + tonumber(ARGV[5]), ARGV[2])
return 1
