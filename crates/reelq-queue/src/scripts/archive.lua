-- Takes archived jobs and batches out of the ledger. The archiver (one at a time: it holds the
-- lease `P archiver`, its partition's) read finished jobs, wrote them to the object store and
-- had the segment acknowledged; now it removes from Redis those that have not changed since it
-- read them. A job an operator brought back meanwhile, or whose completion webhook is pending
-- again, stays (it is archived again once it ends). A removed job's record, its pre-schema-3
-- event list and its state index entry go. Its task index entry stays until it expires: it is
-- what keeps another job from adopting the task (reconciliation, a late callback). Its batch
-- counts it (`archived`); once all of a batch's jobs are counted, the batch is ready to be
-- archived too (`P archive_ready`).
-- Args (archive.rs): token (the lease's); op: 'take' (the lease, if nobody holds it),
-- 'remove', 'remove_batches' or 'release' (give the lease up); lease_ms (how long the lease
-- lives on from now: a remove renews it for the pass's next segment); jobs (for 'remove':
-- {id, state, updated_ms, events}, the state it was read in and its `updated_ms` and
-- `events` as read, '' where absent; a job whose record was already gone is passed with
-- its state and '' '': its index entry is dropped); batches (for 'remove_batches': {id,
-- snapshot}, the snapshot of its settings as read, BATCH_SNAPSHOT's fields joined by '|':
-- it goes if unchanged, still finished with every job archived, and no completion webhook
-- pending).
-- Reply: {held = true, removed, kept} ({removed = 1} for a lease taken), or {held = false}
-- if the lease is not this archiver's (another holds it, or it expired and another took
-- it): nothing was done.
local BATCH_SNAPSHOT = { 'budget_micros', 'reserved_micros', 'cancelled_ms', 'start_after_ms',
  'priority', 'name' }
local lease = prefix .. 'archiver'
local function reply(removed, kept)
  return cjson.encode({ held = true, removed = removed, kept = kept })
end
local lost = cjson.encode({ held = false })
if A.op == 'take' then
  -- Here (not a plain SET) so that a full Redis, which refuses plain writes, still lets the
  -- archiver in to free memory.
  if redis.call('SET', lease, A.token, 'NX', 'PX', A.lease_ms) then return reply(1, 0) end
  return lost
end
if redis.call('GET', lease) ~= A.token then return lost end
if A.op == 'release' then
  redis.call('DEL', lease)
  return reply(0, 0)
end
redis.call('PEXPIRE', lease, A.lease_ms)
local removed, kept = 0, 0
local ready = prefix .. 'archive_ready'
if A.op == 'remove_batches' then
  for _, batch in ipairs(A.batches) do
    local id = batch.id
    local info = prefix .. 'batchinfo:' .. id
    local f = redis.call('HMGET', info, 'open', 'total', 'archived', 'notify_state')
    local snapshot = redis.call('HMGET', info, unpack(BATCH_SNAPSHOT))
    for n = 1, #snapshot do snapshot[n] = snapshot[n] or '' end
    if not f[2] then
      redis.call('ZREM', ready, id)
      kept = kept + 1
    elseif f[1] == '0' and tonumber(f[3] or '0') >= tonumber(f[2]) and f[4] ~= 'pending'
        and table.concat(snapshot, '|') == batch.snapshot then
      redis.call('DEL', info, prefix .. 'batch:' .. id)
      redis.call('ZREM', prefix .. 'batches', id)
      redis.call('ZREM', ready, id)
      removed = removed + 1
    else
      kept = kept + 1
    end
  end
  return reply(removed, kept)
end
local now = now_ms()
for _, read in ipairs(A.jobs) do
  local id, read_state, updated, events = read.id, read.state, read.updated_ms, read.events
  local job = prefix .. 'job:' .. id
  local f = redis.call('HMGET', job, 'state', 'updated_ms', 'events', 'notify_state', 'batch')
  if not f[1] then
    redis.call('ZREM', prefix .. 'state:' .. read_state, id)
    kept = kept + 1
  elseif f[1] == read_state and TERMINAL[f[1]] and (f[2] or '') == updated
      and (f[3] or '') == events and f[4] ~= 'pending' then
    redis.call('DEL', job, prefix .. 'log:' .. id)
    redis.call('ZREM', prefix .. 'state:' .. f[1], id)
    if f[5] then
      local info = prefix .. 'batchinfo:' .. f[5]
      local archived = redis.call('HINCRBY', info, 'archived', 1)
      if archived >= tonumber(redis.call('HGET', info, 'total') or '0') then
        redis.call('ZADD', ready, now, f[5])
      end
    end
    removed = removed + 1
  else
    kept = kept + 1
  end
end
return reply(removed, kept)
