-- Records a completion webhook's delivery attempt.
-- KEYS[1]  notify schedule
-- ARGV[1]  key prefix
-- ARGV[2]  job id
-- ARGV[3]  event id that was sent (a newer ending of the job leaves its own event alone)
-- ARGV[4]  "sent", "retry" or "gave_up"
-- ARGV[5]  retry: ms until the next attempt
-- ARGV[6]  detail for the event log
local due = KEYS[1]
local id, event, outcome, delay_ms, detail = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local job = prefix .. 'job:' .. id
if redis.call('HGET', job, 'notify_event') ~= event then return 0 end
local now = now_ms()
if outcome == 'retry' then
  redis.call('HINCRBY', job, 'notify_attempt', 1)
  redis.call('ZADD', due, now + delay_ms, id)
else
  redis.call('HSET', job, 'notify_state', outcome)
  redis.call('ZREM', due, id)
  log_event(id, now, 'notify ' .. outcome .. ' ' .. detail)
end
return 1
