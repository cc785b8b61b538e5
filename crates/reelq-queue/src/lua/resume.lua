-- Ends an operator's (or a 429's) pause of one provider account at once, for all replicas,
-- and brings forward the queued jobs the claims held back for it: while an account is
-- paused, the claim reschedules its queued jobs to the pause's end, so without this they
-- would wait that long after a resume.
-- KEYS[1]  pause key, `P pause:{account}`
-- KEYS[2]  `P due`
-- KEYS[3]  `P due_low`
-- ARGV[1]  key prefix
-- ARGV[2]  the account
-- ARGV[3]  the contracts' names, comma-separated: a job that asked only for a provider is
--          held under its contract's name (bringing one of another contract forward is
--          harmless: the claim looks at its pause again)
-- ARGV[4]  the most due entries looked at (the script stays short; the rest go at their time)
-- Returns {jobs brought forward, entries looked at}.
local account, limit = ARGV[2], tonumber(ARGV[4])
local contracts = {}
for name in string.gmatch(ARGV[3], '[^,]+') do contracts[name] = true end
local left = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
if left <= 0 then return { 0, 0 } end
local now = now_ms()
local pause_end = now + left + 1000
local moved, looked = 0, 0
for _, queue in ipairs({ KEYS[2], KEYS[3] }) do
  if looked >= limit then break end
  local ids = redis.call('ZRANGEBYSCORE', queue, '(' .. now, pause_end, 'LIMIT', 0, limit - looked)
  for _, id in ipairs(ids) do
    looked = looked + 1
    local f = redis.call('HMGET', prefix .. 'job:' .. id, 'state', 'provider')
    if f[1] == 'queued' and (f[2] == account or contracts[f[2] or '']) then
      redis.call('ZADD', queue, now, id)
      moved = moved + 1
    end
  end
end
if moved > 0 then redis.call('PUBLISH', prefix .. 'wake', moved) end
return { moved, looked }
