-- Records what reconciliation found about an `uncertain` job (no match, several candidates at
-- the provider), for operators deciding it. Changes nothing else, and nothing once the job
-- has moved on.
-- Args (note.rs): job_id, note.
-- Reply: {noted = true}, or false if the job is not `uncertain`.
local job = prefix .. 'job:' .. A.job_id
if redis.call('HGET', job, 'state') ~= 'uncertain' then return cjson.encode({ noted = false }) end
redis.call('HSET', job, 'reconcile_note', A.note)
return cjson.encode({ noted = true })
