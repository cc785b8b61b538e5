-- An operator's move of a job nobody holds (`uncertain` or `failed`, or not yet submitted):
-- resolve, retry, cancel. Cancelling gives back what its claim reserved against budgets.
-- Args (operator.rs): job_id; from (the states the job may be in, comma-separated); to (the
-- new state); delay_ms (from now until a worker should act, or -1 for none); detail (for
-- the event log); fields (field -> value to store; an empty value deletes the field).
-- Bumps the fence, so a worker still holding an old lease cannot write over the decision.
-- Reply: {applied = true}, or {applied = false, state = where it is} if the job is not in an
-- allowed state (no state: missing).
local due = prefix .. 'due'
local id, to = A.job_id, A.to
local job = prefix .. 'job:' .. id
local state = redis.call('HGET', job, 'state')
if not state or not string.find(',' .. A.from .. ',', ',' .. state .. ',', 1, true) then
  return cjson.encode({ applied = false, state = state or nil })
end
local now = now_ms()
if to == 'cancelled' then
  local f = redis.call('HMGET', job, 'batch', 'provider', 'cost_micros', 'reserved', 'reserved_day',
    'tenant')
  release_budget(f[1], f[2] or '', f[3], f[4], f[5], f[6])
  redis.call('HSET', job, 'reserved', '')
end
for field, value in pairs(A.fields) do
  if value == '' then
    redis.call('HDEL', job, field)
  else
    redis.call('HSET', job, field, value)
  end
end
redis.call('HINCRBY', job, 'fence', 1)
if state == 'queued' then unqueue(job, id) end
move(job, id, state, to, now, A.detail)
schedule(due, id, now, A.delay_ms)
return cjson.encode({ applied = true })
