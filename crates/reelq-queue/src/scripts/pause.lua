-- Pauses every submit to one provider account, for all replicas, until a time.
-- Args (pause.rs): account, pause_ms (how long). Never shortens a longer pause already in
-- force (`P pause:{account}`).
-- Reply: {left_ms = the pause left}.
local key = home .. 'pause:' .. A.account
local left = redis.call('PTTL', key)
if left < A.pause_ms then
  redis.call('SET', key, '1', 'PX', A.pause_ms)
  left = A.pause_ms
end
return cjson.encode({ left_ms = left })
