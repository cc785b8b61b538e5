-- Moves a leased job on, if the caller still holds the lease.
-- KEYS[1]  due schedule
-- ARGV[1]  key prefix
-- ARGV[2]  job id
-- ARGV[3]  fence the caller was given at claim
-- ARGV[4]  the claim's token: with the fence, names one claim even if Redis lost writes and
--          its fence counter rolled back
-- ARGV[5]  states the job may be in, comma-separated (e.g. "submitting,uncertain")
-- ARGV[6]  new state
-- ARGV[7]  ms from now until a worker should act again, or -1 for none (terminal, uncertain)
-- ARGV[8]  detail for the event log
-- ARGV[9]  moving to `uncertain`: ms its in-flight slot stays taken, or -1
-- KEYS[2]  the ledger's history (`P history`) and KEYS[3] the caller's count of its durable
--          writes (`P mark:{client}`), ARGV[10] the history's epoch as the caller knows it and
--          ARGV[11] the count it saw made durable: a move to `submitting` is refused, unmade,
--          if the history is another or the count is lower (the ledger lost writes the caller
--          saw acknowledged), or while a declared rollback holds paid creates (history.lua)
-- ARGV[12..] field/value pairs to store on the job
-- Moving to `submitting` counts a submit attempt (`submits`) and stamps `submit_ms`. Moving to `waiting` on a task a
-- callback already named (`task_id_hint`) makes the first poll immediate.
-- Returns {1} on success, also when the job is already in the new state under the same lease
-- (a retry after a lost reply); {0, state, fence} when the lease was lost; {2} when paid
-- creates are held; {3} when the ledger lost history the caller saw.
local due = KEYS[1]
local id, fence, token, allowed, to, delay_ms, detail, slot_hold_ms =
  ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
local job = prefix .. 'job:' .. id
if to == 'submitting' then
  local history = redis.call('HMGET', KEYS[2], 'epoch', 'hold_max_ms')
  local count = tonumber(redis.call('GET', KEYS[3]) or '0')
  if history[1] ~= ARGV[10] or count < tonumber(ARGV[11]) then return { 3 } end
  if history[2] and tonumber(history[2]) > now_ms() then return { 2 } end
end
local cur = redis.call('HMGET', job, 'state', 'fence', 'task_id_hint', 'submits', 'provider',
  'batch', 'cost_micros', 'reserved', 'reserved_day', 'token', 'notify_url', 'events')
local allowed_now = cur[1] and string.find(',' .. allowed .. ',', ',' .. cur[1] .. ',', 1, true)
local same_lease = cur[2] == fence and cur[10] == token
if same_lease and cur[1] == to and not allowed_now then
  -- Written again so that a WAIT after this reply (on a socket that may be new) covers it.
  redis.call('HSET', job, 'updated_ms', now_ms())
  return { 1 }
end
if not allowed_now or not same_lease then
  return { 0, cur[1] or '', cur[2] or '' }
end
local now = now_ms()
local provider = cur[5] or ''
-- One HSET for the step's fields, the released lease (an empty owner) and the new state.
local fields = { 'owner', '' }
for i = 12, #ARGV do fields[#fields + 1] = ARGV[i] end
local hint = cur[3]
if to == 'waiting' and hint then
  -- A callback that came while the submit was in flight named this task: it is done, so
  -- poll at once rather than after the first-poll delay.
  for i = 12, #ARGV - 1, 2 do
    if ARGV[i] == 'task_id' and ARGV[i + 1] == hint then delay_ms = 0 end
  end
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
-- A create the provider refused costs nothing: give its budget reservation back.
if cur[1] == 'submitting' and (to == 'failed' or to == 'rejected') and (cur[8] or '') ~= '' then
  release_budget(cur[6], provider, cur[7], cur[8], cur[9])
  fields[#fields + 1] = 'reserved'
  fields[#fields + 1] = ''
end
if cur[1] ~= to then
  move(job, id, cur[1], to, now, detail, fields, provider,
    { batch = cur[6], has_notify_url = cur[11] ~= false, events = cur[12] })
else
  if detail ~= '' then
    for _, v in ipairs(event_fields(job, now, to .. ' ' .. detail, cur[12])) do
      fields[#fields + 1] = v
    end
  end
  redis.call('HSET', job, unpack(fields))
  -- A claimed job whose submit never began goes back to the queue: the slot its claim took
  -- is given back, as a move into a state of SLOT_FREE would.
  if SLOT_FREE[to] then redis.call('ZREM', prefix .. 'inflight:' .. provider, id) end
end
if to == 'uncertain' then hold_uncertain_slot(provider, id, now, slot_hold_ms) end
schedule(due, id, now, delay_ms)
return { 1 }
