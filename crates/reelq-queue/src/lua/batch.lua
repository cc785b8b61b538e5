-- An operator's action on a whole batch, in one script.
-- KEYS[1]  due schedule
-- ARGV[1]  key prefix
-- ARGV[2]  batch id
-- ARGV[3]  "resume": raise the budget to ARGV[4] micros (or keep it, if "") and queue every
--          `budget_held` job again; "cancel": end every job not yet submitted (`queued`,
--          `budget_held`) as `cancelled` (jobs in flight finish)
-- Returns the number of jobs moved, or -1 when the batch does not exist.
local due = KEYS[1]
local batch, action = ARGV[2], ARGV[3]
local info = prefix .. 'batchinfo:' .. batch
if redis.call('EXISTS', info) == 0 then return -1 end
local now = now_ms()
if action == 'resume' and ARGV[4] ~= '' then
  redis.call('HSET', info, 'budget_micros', ARGV[4])
end
local queue = due
if redis.call('HGET', info, 'priority') == 'low' then queue = prefix .. 'due_low' end
local moved = 0
for _, id in ipairs(redis.call('LRANGE', prefix .. 'batch:' .. batch, 0, -1)) do
  local job = prefix .. 'job:' .. id
  local f = redis.call('HMGET', job, 'state', 'provider', 'cost_micros', 'reserved', 'reserved_day')
  local state = f[1]
  if action == 'resume' and state == 'budget_held' then
    redis.call('ZADD', queue, now, id)
    move(job, id, state, 'queued', now, 'batch resumed')
    moved = moved + 1
  elseif action == 'cancel' and (state == 'queued' or state == 'budget_held') then
    redis.call('ZREM', due, id)
    redis.call('ZREM', prefix .. 'due_low', id)
    release_budget(batch, f[2] or '', f[3], f[4], f[5])
    move(job, id, state, 'cancelled', now, 'batch cancelled', { 'reserved', '' }, f[2] or '')
    moved = moved + 1
  end
end
if action == 'resume' and moved > 0 then redis.call('PUBLISH', prefix .. 'wake', moved) end
return moved
