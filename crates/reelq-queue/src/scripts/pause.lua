-- Pauses every submit to one provider account, for all replicas, until a time.
-- Args (pause.rs): account, pause_ms (how long). Never shortens a longer pause already in
-- force (`P pause:{account}`, holding the unix ms it ends at, and expiring then: a claim's
-- view of the home reads many accounts' pauses in one MGET).
-- Reply: {left_ms = the pause left}.
local key = home .. 'pause:' .. A.account
local left = redis.call('PTTL', key)
if left < A.pause_ms then
  redis.call('SET', key, now_ms() + A.pause_ms, 'PX', A.pause_ms)
  left = A.pause_ms
end
return cjson.encode({ left_ms = left })
