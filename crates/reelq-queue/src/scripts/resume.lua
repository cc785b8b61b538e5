-- Brings forward the queued jobs the claims held back for an account's pause, which the
-- caller has just ended at the home (`P pause:{account}`, for all replicas): while an account
-- is paused, the claim reschedules its queued jobs to the pause's end, so without this they
-- would wait that long after a resume.
-- Args (resume.rs): account; left_ms (what was left of the pause); contracts (the contracts'
-- names: a job that asked only for a provider is held under its contract's name; bringing one
-- of another contract forward is harmless, the claim looks at its pause again); limit (the
-- most due entries looked at, so the script stays short; the rest go at their time).
-- Reply: {moved = jobs brought forward, looked = entries looked at}.
local contracts = {}
for _, name in ipairs(A.contracts) do contracts[name] = true end
local left = A.left_ms
local now = now_ms()
local pause_end = now + left + 1000
local moved, looked = 0, 0
local queues = { prefix .. 'due', prefix .. 'due_low' }
for _, tenant in ipairs(redis.call('ZRANGE', prefix .. 'tenants', 0, -1)) do
  queues[#queues + 1] = tenant_queue(tenant)
end
for _, queue in ipairs(queues) do
  if looked >= A.limit then break end
  local ids = redis.call('ZRANGEBYSCORE', queue, '(' .. now, pause_end, 'LIMIT', 0, A.limit - looked)
  for _, id in ipairs(ids) do
    looked = looked + 1
    local f = redis.call('HMGET', prefix .. 'job:' .. id, 'state', 'provider')
    if f[1] == 'queued' and (f[2] == A.account or contracts[f[2] or '']) then
      redis.call('ZADD', queue, now, id)
      moved = moved + 1
    end
  end
end
if moved > 0 then redis.call('PUBLISH', home .. 'wake', moved) end
return cjson.encode({ moved = moved, looked = looked })
