-- An operator's action on a whole batch, a chunk of its jobs per call (the caller loops from
-- index 0 until the reply's next index is -1), so a batch of any size never holds Redis long.
-- Args (batch.rs): batch (its id); action: "resume" (raise the budget to budget_micros, or
-- keep it if "", and queue every `budget_held` job again) or "cancel" (end every job not yet
-- submitted, `queued` or `budget_held`, as `cancelled`, and mark every `waiting` one
-- (`cancel_ms`): its next poll asks the provider to cancel where the contract can, elsewhere
-- it finishes); start (the index in the batch's job list to start at); count (the most jobs
-- to look at).
-- The first chunk of a cancel marks the batch (`cancelled_ms`): from then on the claim ends
-- any of its jobs it meets still queued, so none is submitted while later chunks run.
-- Reply: {found = true, moved = jobs moved, next_index = where the next chunk starts (absent
-- after the last)}, or {found = false} when the batch does not exist.
local due = prefix .. 'due'
local batch, action, start, count = A.batch, A.action, A.start, A.count
local info = prefix .. 'batchinfo:' .. batch
if redis.call('EXISTS', info) == 0 then return cjson.encode({ found = false }) end
local now = now_ms()
if start == 0 and action == 'resume' and A.budget_micros ~= '' then
  redis.call('HSET', info, 'budget_micros', A.budget_micros)
end
if start == 0 and action == 'cancel' then redis.call('HSETNX', info, 'cancelled_ms', now) end
local queue = due
if redis.call('HGET', info, 'priority') == 'low' then queue = prefix .. 'due_low' end
local list = prefix .. 'batch:' .. batch
local moved = 0
for _, id in ipairs(redis.call('LRANGE', list, start, start + count - 1)) do
  local job = prefix .. 'job:' .. id
  local f = redis.call('HMGET', job, 'state', 'provider', 'cost_micros', 'reserved', 'reserved_day',
    'tenant')
  local state = f[1]
  if action == 'resume' and state == 'budget_held' then
    redis.call('ZADD', queue, now, id)
    move(job, id, state, 'queued', now, 'batch resumed')
    moved = moved + 1
  elseif action == 'cancel' and (state == 'queued' or state == 'budget_held') then
    redis.call('ZREM', due, id)
    unqueue(job, id)
    release_budget(batch, f[2] or '', f[3], f[4], f[5], f[6])
    move(job, id, state, 'cancelled', now, 'batch cancelled', { 'reserved', '' }, f[2] or '')
    moved = moved + 1
  elseif action == 'cancel' and state == 'waiting' then
    -- Not a move: the worker holding or next claiming it reads the mark at its poll.
    redis.call('HSETNX', job, 'cancel_ms', now)
  end
end
if action == 'resume' and moved > 0 then redis.call('PUBLISH', home .. 'wake', moved) end
local next_index = start + count
if next_index >= redis.call('LLEN', list) then next_index = nil end
return cjson.encode({ found = true, moved = moved, next_index = next_index })
