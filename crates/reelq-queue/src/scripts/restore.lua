-- A worker gives a job back what it knows first-hand of a paid create it made: after the
-- ledger went back in time (history.lua), or when the create's answer came back after the
-- submit could no longer be recorded under its lease (Redis away for longer than the
-- step's own retries). Nothing is submitted here: a job that gets its task is polled, one
-- whose create went out with no answer is `uncertain`, settled from the provider's records.
-- Args (restore.rs): job_id; account (the create went to); task_id (the provider answered,
-- or '' if no answer came); token (of the claim the create was made under); sent_ms (unix ms
-- the create went out, by the worker's clock: reconciliation looks around it); index_ttl_ms
-- (how long the task index entry lives); task_account and task_owner (where the home has a
-- slot of its own: the task index's owner of the task, read by the caller); why (for the event log, e.g. "ledger rollback",
-- "late answer"); slot_hold_ms (moving to `uncertain`: how long its in-flight slot stays
-- taken, the account's uncertain slot hold, or -1).
-- A job is given its task only if nobody else can have paid for it since: it is `queued`
-- or `budget_held` (the fence is bumped, so a claim in hand cannot begin a submit), or it
-- is `submitting` or `uncertain` under the claim the create was made under.
-- Reply: {outcome = one of, state = the state it was in (absent: no record)}:
--   "restored"    now `waiting` on the task, polled at once
--   "uncertain"   the ledger had forgotten the create began: `uncertain`
--   "intact"      the ledger already knows (the same task, or a create it reads as begun)
--   "conflict"    the job has another task, the task is another job's, or another claim
--                 has submitted it since: left as it is (a second create was paid)
--   "ended"       the job is terminal
--   "missing"     no record
local due = prefix .. 'due'
local id, account, task_id, token, sent_ms, index_ttl_ms, why, slot_hold_ms =
  A.job_id, A.account, A.task_id, A.token, A.sent_ms, A.index_ttl_ms, A.why, A.slot_hold_ms
local function reply(outcome, state) return cjson.encode({ outcome = outcome, state = state }) end
local job = prefix .. 'job:' .. id
local f = redis.call('HMGET', job, 'state', 'task_id', 'token', 'fence', 'events', 'batch')
local state = f[1]
if not state then return reply('missing') end
if TERMINAL[state] then return reply('ended', state) end
local known = f[2]
if known == '' then known = false end
-- The ledger knows a task and this worker does not know its own (the answer is not back,
-- or was lost): nothing to give back.
if known and (task_id == known or task_id == '') then return reply('intact', state) end
if known then return reply('conflict', state) end
local unsent = state == 'queued' or state == 'budget_held'
local ours = (state == 'submitting' or state == 'uncertain') and f[3] == token
if not unsent and not ours then
  if state == 'submitting' or state == 'uncertain' then return reply('conflict', state) end
  return reply('intact', state)
end
local now = now_ms()
local fence = tonumber(f[4] or '0') + 1
local known_fields = { events = f[5], batch = f[6] }
if task_id ~= '' then
  local owner = task_owner_of(account, task_id)
  if owner and owner ~= id then return reply('conflict', state) end
  redis.call('HDEL', job, 'error', 'error_class', 'reconcile_note', 'task_id_hint')
  move(job, id, state, 'waiting', now, why .. ': task ' .. task_id,
    { 'task_id', task_id, 'attempt', 0, 'fence', fence, 'token', '', 'owner', '',
      'provider', account }, account, known_fields)
  at_home({ op = 'index', account = account, task = task_id, id = id, ttl_ms = index_ttl_ms })
  unqueue(job, id)
  redis.call('ZADD', due, now, id)
  redis.call('PUBLISH', home .. 'wake', 1)
  return reply('restored', state)
end
if not unsent then return reply('intact', state) end
move(job, id, state, 'uncertain', now, why .. ': a create went out',
  { 'fence', fence, 'token', '', 'owner', '', 'provider', account, 'submit_ms', sent_ms,
    'submits', math.max(1, tonumber(redis.call('HGET', job, 'submits') or '0')),
    'error_class', 'unknown_outcome',
    'error', why .. ': a create went out for this job and its answer is not known' },
  account, known_fields)
redis.call('ZREM', due, id)
unqueue(job, id)
hold_uncertain_slot(account, id, now, slot_hold_ms)
return reply('uncertain', state)
