-- Acts on a verified provider callback for one job. Callbacks are hints: this only moves
-- work sooner (and wakes idle workers); the worker still polls the provider before fetching.
-- A task is bound to one job: the task index (`task:{provider}:{task}`) names its owner, and
-- a hint naming a task another job owns, or a task other than the job's own, changes nothing.
-- KEYS[1]  due schedule
-- ARGV[1]  key prefix
-- ARGV[2]  job id
-- ARGV[3]  provider task id the callback names
-- ARGV[4]  who names it, for the event log ("its callback", "the provider's records")
-- ARGV[5]  ms the task index entry written on adoption lives
-- ARGV[6]  "hint" (a callback, not yet confirmed) or "confirmed" (the provider's record of the
--          task matches the job): only a confirmed task is adopted or noted
-- Returns one of:
--   "woken"    waiting for that task and not leased: polled now
--   "adopted"  uncertain (its submitter died mid-call): the callback names its task, poll it
--   "noted"    still submitting: the task id is kept, so an expired lease adopts it too
--   "unconfirmed" a hint that would adopt or note a task: confirm it first
--   "conflict" the task is another job's, or the job already has another task
--   "ignored"  anything else (terminal, leased): a duplicate or a stale hint
--   "missing"  no such job
local due = KEYS[1]
local id, task_id, index_ttl_ms, confirmed = ARGV[2], ARGV[3], tonumber(ARGV[5]), ARGV[6] == 'confirmed'
local job = prefix .. 'job:' .. id
local f = redis.call('HMGET', job, 'state', 'owner', 'task_id', 'provider', 'events')
local state, owner, known_task, provider, events = f[1], f[2], f[3], f[4], f[5]
if not state then return 'missing' end
if known_task == '' then known_task = false end
local task_key = prefix .. 'task:' .. (provider or '') .. ':' .. task_id
local task_owner = redis.call('GET', task_key)
if (task_owner and task_owner ~= id) or (known_task and known_task ~= task_id) then
  return 'conflict'
end
local now = now_ms()
-- An empty owner is a released lease.
if state == 'waiting' and known_task == task_id and (not owner or owner == '') then
  redis.call('ZADD', due, now, id)
  log_event(job, now, 'waiting callback', events)
  redis.call('PUBLISH', prefix .. 'wake', 1)
  return 'woken'
elseif (state == 'uncertain' and not known_task or state == 'submitting') and not confirmed then
  return 'unconfirmed'
elseif state == 'uncertain' and not known_task then
  redis.call('HDEL', job, 'error', 'error_class', 'reconcile_note')
  redis.call('HINCRBY', job, 'fence', 1)
  -- Who named it first: an event line keeps 64 bytes, and a task id can be longer.
  move(job, id, state, 'waiting', now, 'named by ' .. ARGV[4] .. ': task ' .. task_id,
    { 'task_id', task_id, 'attempt', 0 }, provider, { events = events })
  redis.call('SET', task_key, id, 'PX', index_ttl_ms)
  redis.call('ZADD', due, now, id)
  redis.call('PUBLISH', prefix .. 'wake', 1)
  return 'adopted'
elseif state == 'submitting' then
  redis.call('HSET', job, 'task_id_hint', task_id)
  return 'noted'
end
return 'ignored'
