-- Moves a leased job on, if the caller still holds the lease.
-- KEYS[1]  due schedule
-- ARGV[1]  key prefix
-- ARGV[2]  job id
-- ARGV[3]  fence the caller was given at claim
-- ARGV[4]  states the job may be in, comma-separated (e.g. "submitting,uncertain")
-- ARGV[5]  new state
-- ARGV[6]  ms from now until a worker should act again, or -1 for none (terminal, uncertain)
-- ARGV[7]  detail for the event log
-- ARGV[8..] field/value pairs to store on the job
-- Moving to `submitting` counts a submit attempt (`submits`). Moving to `waiting` on a task a
-- callback already named (`task_id_hint`) makes the first poll immediate.
-- Returns {1} on success, also when the job is already in the new state under the same fence
-- (a retry after a lost reply); {0, state, fence} when the lease was lost.
local due = KEYS[1]
local id, fence, allowed, to, delay_ms, detail =
  ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local job = prefix .. 'job:' .. id
local cur = redis.call('HMGET', job, 'state', 'fence', 'task_id_hint', 'submits', 'provider',
  'batch', 'cost_micros', 'reserved', 'reserved_day')
local allowed_now = cur[1] and string.find(',' .. allowed .. ',', ',' .. cur[1] .. ',', 1, true)
if cur[2] == fence and cur[1] == to and not allowed_now then
  return { 1 }
end
if not allowed_now or cur[2] ~= fence then
  return { 0, cur[1] or '', cur[2] or '' }
end
local now = now_ms()
-- One HSET for the step's fields, the released lease (an empty owner) and the new state.
local fields = { 'owner', '' }
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
local hint = cur[3]
if to == 'waiting' and hint then
  -- A callback that came while the submit was in flight named this task: it is done, so
  -- poll at once rather than after the first-poll delay.
  for i = 8, #ARGV - 1, 2 do
    if ARGV[i] == 'task_id' and ARGV[i + 1] == hint then delay_ms = 0 end
  end
  redis.call('HDEL', job, 'task_id_hint')
end
if to == 'submitting' then
  fields[#fields + 1] = 'submits'
  fields[#fields + 1] = tonumber(cur[4] or '0') + 1
end
-- The generation is over (or never started): its in-flight slot, if limits took one, is free.
-- An `uncertain` job keeps it until it expires: the provider may still be generating.
local generating = { submitting = true, waiting = true, uncertain = true }
if (cur[1] == 'submitting' or cur[1] == 'waiting') and not generating[to] then
  redis.call('ZREM', prefix .. 'inflight:' .. (cur[5] or ''), id)
end
-- A create the provider refused costs nothing: give its budget reservation back.
if cur[1] == 'submitting' and (to == 'failed' or to == 'rejected') and (cur[8] or '') ~= '' then
  release_budget(cur[6], cur[5] or '', cur[7], cur[8], cur[9])
  fields[#fields + 1] = 'reserved'
  fields[#fields + 1] = ''
end
if cur[1] ~= to then
  move(job, id, cur[1], to, now, detail, fields)
else
  redis.call('HSET', job, unpack(fields))
  if detail ~= '' then log_event(id, now, to .. ' ' .. detail) end
end
schedule(due, id, now, delay_ms)
return { 1 }
