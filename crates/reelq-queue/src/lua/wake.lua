-- Acts on a verified provider callback for one job. Callbacks are hints: this only moves
-- work sooner (and wakes idle workers); the worker still polls the provider before fetching.
-- KEYS[1]  due schedule
-- ARGV[1]  key prefix
-- ARGV[2]  job id
-- ARGV[3]  provider task id the callback names
-- ARGV[4]  who names it, for the event log ("its callback", "the provider's records")
-- Returns one of:
--   "woken"   waiting for that task and not leased: polled now
--   "adopted" uncertain (its submitter died mid-call): the callback names its task, poll it
--   "noted"   still submitting: the task id is kept, so an expired lease adopts it too
--   "ignored" anything else (terminal, leased, another task): a duplicate or a stale hint
--   "missing" no such job
local due = KEYS[1]
local id, task_id = ARGV[2], ARGV[3]
local job = prefix .. 'job:' .. id
local f = redis.call('HMGET', job, 'state', 'owner', 'task_id')
local state, owner, known_task = f[1], f[2], f[3]
if not state then return 'missing' end
local now = now_ms()
-- An empty owner is a released lease.
if state == 'waiting' and known_task == task_id and (not owner or owner == '') then
  redis.call('ZADD', due, now, id)
  log_event(id, now, 'waiting callback')
  redis.call('PUBLISH', prefix .. 'wake', 1)
  return 'woken'
elseif state == 'uncertain' and not known_task then
  redis.call('HDEL', job, 'error', 'error_class', 'reconcile_note')
  redis.call('HINCRBY', job, 'fence', 1)
  move(job, id, state, 'waiting', now, 'task ' .. task_id .. ' named by ' .. ARGV[4],
    { 'task_id', task_id, 'attempt', 0 })
  redis.call('ZADD', due, now, id)
  redis.call('PUBLISH', prefix .. 'wake', 1)
  return 'adopted'
elseif state == 'submitting' then
  redis.call('HSET', job, 'task_id_hint', task_id)
  return 'noted'
end
return 'ignored'
