-- An operator's move of a job nobody holds (`uncertain` or `failed`, or not yet submitted):
-- resolve, retry, cancel. Cancelling gives back what its claim reserved against budgets.
-- KEYS[1]  due schedule
-- ARGV[1]  key prefix
-- ARGV[2]  job id
-- ARGV[3]  states the job may be in, comma-separated
-- ARGV[4]  new state
-- ARGV[5]  ms from now until a worker should act, or -1 for none
-- ARGV[6]  detail for the event log
-- ARGV[7..] field/value pairs; an empty value deletes the field
-- Bumps the fence, so a worker still holding an old lease cannot write over the decision.
-- Returns {1} on success, {0, state} if the job is not in an allowed state ("" if missing).
local due = KEYS[1]
local id, allowed, to, delay_ms, detail = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local job = prefix .. 'job:' .. id
local state = redis.call('HGET', job, 'state')
if not state or not string.find(',' .. allowed .. ',', ',' .. state .. ',', 1, true) then
  return { 0, state or '' }
end
local now = now_ms()
if to == 'cancelled' then
  local f = redis.call('HMGET', job, 'batch', 'provider', 'cost_micros', 'reserved', 'reserved_day')
  release_budget(f[1], f[2] or '', f[3], f[4], f[5])
  redis.call('HSET', job, 'reserved', '')
end
for i = 7, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', job, ARGV[i])
  else
    redis.call('HSET', job, ARGV[i], ARGV[i + 1])
  end
end
redis.call('HINCRBY', job, 'fence', 1)
move(job, id, state, to, now, detail)
schedule(due, id, now, delay_ms)
return { 1 }
