-- Takes archived jobs out of the ledger. The archiver (one at a time: it holds the lease
-- `P archiver`) read finished jobs, wrote them to the object store and had the segment
-- acknowledged; now it removes from Redis those that have not changed since it read them.
-- A job an operator brought back meanwhile, or whose completion webhook is pending again,
-- stays (it is archived again once it ends). A removed job's record, its pre-schema-3 event
-- list, its state index entry and its task index entry go; its batch keeps its id (and
-- counts it in `archived`), and readers find the job in the store.
-- KEYS[1]  the archiver's lease (`P archiver`)
-- ARGV[1]  key prefix
-- ARGV[2]  the lease's token
-- ARGV[3]  'remove', 'remove_batches' or 'release' (give the lease up; nothing follows)
-- ARGV[4]  ms the lease lives on from now (a remove renews it for the pass's next segment)
-- ARGV[5..] per job, four values: job id, the state it was read in, its `updated_ms` and
--          `events` as read ('' where absent); a job whose record was already gone is
--          passed with state and '' '' (its index entry is dropped); for
--          'remove_batches', batch ids: each goes if it is still finished with every job
--          archived and no completion webhook pending
-- Returns {removed, kept}, or -1 if the lease is no longer this archiver's (it expired and
-- another took it): nothing was removed.
local lease = KEYS[1]
if redis.call('GET', lease) ~= ARGV[2] then return -1 end
if ARGV[3] == 'release' then
  redis.call('DEL', lease)
  return { 0, 0 }
end
redis.call('PEXPIRE', lease, ARGV[4])
local removed, kept = 0, 0
if ARGV[3] == 'remove_batches' then
  for i = 5, #ARGV do
    local info = prefix .. 'batchinfo:' .. ARGV[i]
    local f = redis.call('HMGET', info, 'open', 'total', 'archived', 'notify_state')
    if f[1] == '0' and tonumber(f[3] or '0') >= tonumber(f[2] or '1') and f[4] ~= 'pending' then
      redis.call('DEL', info, prefix .. 'batch:' .. ARGV[i])
      redis.call('ZREM', prefix .. 'batches', ARGV[i])
      removed = removed + 1
    else
      kept = kept + 1
    end
  end
  return { removed, kept }
end
for i = 5, #ARGV, 4 do
  local id, read_state, updated, events = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local job = prefix .. 'job:' .. id
  local f = redis.call('HMGET', job, 'state', 'updated_ms', 'events', 'notify_state',
    'provider', 'task_id', 'batch')
  if not f[1] then
    redis.call('ZREM', prefix .. 'state:' .. read_state, id)
    kept = kept + 1
  elseif f[1] == read_state and TERMINAL[f[1]] and (f[2] or '') == updated
      and (f[3] or '') == events and f[4] ~= 'pending' then
    redis.call('DEL', job, prefix .. 'log:' .. id)
    redis.call('ZREM', prefix .. 'state:' .. f[1], id)
    -- Its task's index entry goes too: a late callback for it finds no job, and is refused.
    if f[5] and f[6] and f[6] ~= '' then
      local task_key = prefix .. 'task:' .. f[5] .. ':' .. f[6]
      if redis.call('GET', task_key) == id then redis.call('DEL', task_key) end
    end
    -- A batch counts its jobs archived: once all are, the batch is archived too.
    if f[7] then redis.call('HINCRBY', prefix .. 'batchinfo:' .. f[7], 'archived', 1) end
    removed = removed + 1
  else
    kept = kept + 1
  end
end
return { removed, kept }
