-- Moves a leased job on, if the caller still holds the lease.
-- Args (transition.rs): job_id; fence and token (the lease the caller was given at claim;
-- the token names one claim even if Redis lost writes and its fence counter rolled back);
-- from (the states the job may be in, comma-separated, e.g. "submitting,uncertain"); to (the
-- new state); delay_ms (from now until a worker should act again, or -1 for none: terminal,
-- uncertain); detail (for the event log); slot_hold_ms (moving to `uncertain`: how long its
-- in-flight slot stays taken, or -1); fields (field -> value to store on the job).
-- A move to `submitting` also names the ledger's history as the caller knows it (epoch, and
-- seen: the count of its durable writes it saw made durable, kept at mark_key,
-- `P mark:{client}`): it is refused, unmade, if the history (`P history`) is another or the
-- count is lower (the ledger lost writes the caller saw acknowledged), or while a declared
-- rollback holds paid creates (history.lua).
-- Moving to `submitting` counts a submit attempt (`submits`) and stamps `submit_ms`. Moving
-- to `waiting` on a task a callback already named (`task_id_hint`) makes the first poll
-- immediate.
-- Reply: {outcome = "applied"}, also when the job is already in the new state under the same
-- lease (a retry after a lost reply); {outcome = "lease_lost", state, fence} (state absent:
-- no record); {outcome = "held"} when paid creates are held; {outcome = "history_lost"} when
-- the ledger lost history the caller saw.
local due = prefix .. 'due'
local id, fence, token, allowed, to, delay_ms, detail, slot_hold_ms =
  A.job_id, A.fence, A.token, A.from, A.to, A.delay_ms, A.detail, A.slot_hold_ms
local function reply(outcome) return cjson.encode({ outcome = outcome }) end
local job = prefix .. 'job:' .. id
if to == 'submitting' then
  local history = redis.call('HMGET', prefix .. 'history', 'epoch', 'hold_max_ms')
  local count = tonumber(redis.call('GET', A.mark_key) or '0')
  if history[1] ~= A.epoch or count < A.seen then return reply('history_lost') end
  if history[2] and tonumber(history[2]) > now_ms() then return reply('held') end
end
local cur = redis.call('HMGET', job, 'state', 'fence', 'task_id_hint', 'submits', 'provider',
  'batch', 'cost_micros', 'reserved', 'reserved_day', 'token', 'notify_url', 'events', 'tslot',
  'tenant')
local known = { batch = cur[6], has_notify_url = cur[11] ~= false, events = cur[12],
  tslot = cur[13], tenant = cur[14] }
local allowed_now = cur[1] and string.find(',' .. allowed .. ',', ',' .. cur[1] .. ',', 1, true)
local same_lease = tonumber(cur[2]) == fence and cur[10] == token
if same_lease and cur[1] == to and not allowed_now then
  -- Written again so that a WAIT after this reply (on a socket that may be new) covers it.
  redis.call('HSET', job, 'updated_ms', now_ms())
  return reply('applied')
end
if not allowed_now or not same_lease then
  return cjson.encode({ outcome = 'lease_lost', state = cur[1] or nil,
    fence = tonumber(cur[2] or '0') })
end
local now = now_ms()
local provider = cur[5] or ''
-- One HSET for the step's fields, the released lease (an empty owner) and the new state.
local fields = { 'owner', '' }
for field, value in pairs(A.fields) do
  fields[#fields + 1] = field
  fields[#fields + 1] = value
end
local hint = cur[3]
if to == 'waiting' and hint then
  -- A callback that came while the submit was in flight named this task: it is done, so
  -- poll at once rather than after the first-poll delay.
  if A.fields.task_id == hint then delay_ms = 0 end
  redis.call('HDEL', job, 'task_id_hint')
end
if to == 'submitting' then
  -- When the create went out, by Redis's clock: reconciliation looks for the provider's task
  -- around this time.
  fields[#fields + 1] = 'submits'
  fields[#fields + 1] = tonumber(cur[4] or '0') + 1
  fields[#fields + 1] = 'submit_ms'
  fields[#fields + 1] = now
end
if A.spec then
  -- A fall back (moves.rs): the spec at the route's next candidate replaces the record's (its
  -- pieces past the new count removed), with what moves the job on from there.
  local kept = redis.call('HMGET', job, 'spec_n', 'spec')
  if kept[2] then
    fields[#fields + 1] = 'spec'
    fields[#fields + 1] = A.spec
  else
    local set = spec_fields(A.spec)
    for _, v in ipairs(set) do fields[#fields + 1] = v end
    local stale = {}
    for i = set[#set], tonumber(kept[1] or '0') - 1 do stale[#stale + 1] = 's' .. i end
    if #stale > 0 then redis.call('HDEL', job, unpack(stale)) end
  end
  if A.route_hold then
    for _, v in ipairs(route_hold_fields(A.route_hold, now)) do fields[#fields + 1] = v end
  else
    redis.call('HDEL', job, 'fb_ms', 'fb_on')
  end
end
-- A create the provider refused costs nothing, and a claimed job that ends before its submit
-- began spent nothing: give its budget reservation back (a job falling back reserves again at
-- its next candidate's price).
if (cur[1] == 'submitting' or cur[1] == 'queued') and (to == 'failed' or to == 'rejected' or A.spec)
  and (cur[8] or '') ~= '' then
  release_budget(cur[6], provider, cur[7], cur[8], cur[9], cur[14])
  fields[#fields + 1] = 'reserved'
  fields[#fields + 1] = ''
end
if cur[1] ~= to then
  move(job, id, cur[1], to, now, detail, fields, provider, known)
else
  if detail ~= '' then
    for _, v in ipairs(event_fields(job, now, to .. ' ' .. detail, cur[12])) do
      fields[#fields + 1] = v
    end
  end
  redis.call('HSET', job, unpack(fields))
  -- A claimed job whose submit never began goes back to the queue: the slot its claim took
  -- is given back, as a move into a state of SLOT_FREE would.
  if SLOT_FREE[to] then free_slots(job, id, provider, known) end
end
if to == 'uncertain' then hold_uncertain_slot(provider, id, now, slot_hold_ms) end
schedule(due, id, now, delay_ms)
return reply('applied')
