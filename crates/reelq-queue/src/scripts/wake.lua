-- Acts on a verified provider callback for one job. Callbacks are hints: this only moves
-- work sooner (and wakes idle workers); the worker still polls the provider before fetching.
-- A task is bound to one job: the task index (`task:{provider}:{task}`) names its owner, and
-- a hint naming a task another job owns, or a task other than the job's own, changes nothing.
-- Args (wake.rs): job_id; task_id (the provider task the callback names); task_account and
-- task_owner (where the home has a slot of its own: the job's account and the task index's
-- owner of the task there, as the caller read them); by (who names it,
-- for the event log: "its callback", "the provider's records"); index_ttl_ms (how long the
-- task index entry written on adoption lives); confirmed (false for a callback's hint, true
-- when the provider's record of the task matches the job: only a confirmed task is adopted
-- or noted).
-- Reply: {outcome = one of}:
--   "woken"    waiting for that task and not leased: polled now
--   "adopted"  uncertain (its submitter died mid-call): the callback names its task, poll it
--   "noted"    still submitting: the task id is kept, so an expired lease adopts it too
--   "unconfirmed" a hint that would adopt or note a task: confirm it first
--   "conflict" the task is another job's, or the job already has another task
--   "ignored"  anything else (terminal, leased): a duplicate or a stale hint
--   "missing"  no such job
local due = prefix .. 'due'
local id, task_id, index_ttl_ms, confirmed = A.job_id, A.task_id, A.index_ttl_ms, A.confirmed
local function reply(outcome) return cjson.encode({ outcome = outcome }) end
local job = prefix .. 'job:' .. id
local f = redis.call('HMGET', job, 'state', 'owner', 'task_id', 'provider', 'events')
local state, owner, known_task, provider, events = f[1], f[2], f[3], f[4], f[5]
if not state then return reply('missing') end
if known_task == '' then known_task = false end
local task_owner, known = task_owner_of(provider or '', task_id)
-- (The job's account changed since the caller read it: a stale hint.)
if not known then return reply('ignored') end
if (task_owner and task_owner ~= id) or (known_task and known_task ~= task_id) then
  return reply('conflict')
end
local now = now_ms()
-- An empty owner is a released lease.
if state == 'waiting' and known_task == task_id and (not owner or owner == '') then
  redis.call('ZADD', due, now, id)
  -- Its next query confirms the callback: not one of reelq's own polls.
  redis.call('HSET', job, 'woken', 1)
  log_event(job, now, 'waiting callback', events)
  redis.call('PUBLISH', home .. 'wake', 1)
  return reply('woken')
elseif (state == 'uncertain' and not known_task or state == 'submitting') and not confirmed then
  return reply('unconfirmed')
elseif state == 'uncertain' and not known_task then
  redis.call('HDEL', job, 'error', 'error_class', 'reconcile_note')
  redis.call('HINCRBY', job, 'fence', 1)
  -- Who named it first: an event line keeps 64 bytes, and a task id can be longer.
  move(job, id, state, 'waiting', now, 'named by ' .. A.by .. ': task ' .. task_id,
    { 'task_id', task_id, 'attempt', 0 }, provider, { events = events })
  at_home({ op = 'index', account = provider or '', task = task_id, id = id, ttl_ms = index_ttl_ms })
  redis.call('ZADD', due, now, id)
  redis.call('PUBLISH', home .. 'wake', 1)
  return reply('adopted')
elseif state == 'submitting' then
  redis.call('HSET', job, 'task_id_hint', task_id)
  return reply('noted')
end
return reply('ignored')
