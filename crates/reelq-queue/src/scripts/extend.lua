-- Renews a lease so a long step (a big download) is not taken over while it still runs.
-- Args (extend.rs): job_id, fence and token (the lease the caller holds), lease_ms (the new
-- lease length from now).
-- Reply: {renewed = true}, or false if the lease was lost.
local job = prefix .. 'job:' .. A.job_id
local lease = redis.call('HMGET', job, 'fence', 'token')
if tonumber(lease[1]) ~= A.fence or lease[2] ~= A.token then
  return cjson.encode({ renewed = false })
end
redis.call('ZADD', prefix .. 'due', 'XX', now_ms() + A.lease_ms, A.job_id)
return cjson.encode({ renewed = true })
