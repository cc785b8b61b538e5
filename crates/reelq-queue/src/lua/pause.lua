-- Pauses every submit to one provider account, for all replicas, until a time.
-- KEYS[1]  pause key, `P pause:{provider}`
-- ARGV[1]  key prefix (unused; kept for the shared prelude)
-- ARGV[2]  pause length in ms
-- Never shortens a longer pause already in force. Returns the pause left in ms.
local want = tonumber(ARGV[2])
local left = redis.call('PTTL', KEYS[1])
if left < want then
  redis.call('SET', KEYS[1], '1', 'PX', want)
  return want
end
return left
