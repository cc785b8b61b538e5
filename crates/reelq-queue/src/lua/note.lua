-- Records what reconciliation found about an `uncertain` job (no match, several candidates at
-- the provider), for operators deciding it. Changes nothing else, and nothing once the job
-- has moved on.
-- KEYS[1]  due schedule (unused; every ledger script names it)
-- ARGV[1]  key prefix
-- ARGV[2]  job id
-- ARGV[3]  the note
-- Returns 1 if noted, 0 if the job is not `uncertain`.
local job = prefix .. 'job:' .. ARGV[2]
if redis.call('HGET', job, 'state') ~= 'uncertain' then return 0 end
redis.call('HSET', job, 'reconcile_note', ARGV[3])
return 1
