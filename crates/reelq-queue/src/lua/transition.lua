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
local cur = redis.call('HMGET', job, 'state', 'fence')
local allowed_now = cur[1] and string.find(',' .. allowed .. ',', ',' .. cur[1] .. ',', 1, true)
if cur[2] == fence and cur[1] == to and not allowed_now then
  return { 1 }
end
if not allowed_now or cur[2] ~= fence then
  return { 0, cur[1] or '', cur[2] or '' }
end
local now = now_ms()
if #ARGV >= 8 then
  redis.call('HSET', job, unpack(ARGV, 8))
end
redis.call('HDEL', job, 'owner')
if to == 'waiting' then
  -- A callback that came while the submit was in flight named this task: it is done, so
  -- poll at once rather than after the first-poll delay.
  local hint = redis.call('HGET', job, 'task_id_hint')
  if hint then
    if hint == redis.call('HGET', job, 'task_id') then delay_ms = 0 end
    redis.call('HDEL', job, 'task_id_hint')
  end
end
if to == 'submitting' then redis.call('HINCRBY', job, 'submits', 1) end
if cur[1] ~= to then
  move(job, id, cur[1], to, now, detail)
elseif detail ~= '' then
  log_event(id, now, to .. ' ' .. detail)
end
schedule(due, id, now, delay_ms)
return { 1 }
