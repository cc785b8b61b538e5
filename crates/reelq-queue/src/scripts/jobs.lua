-- Shared by the enqueue scripts (enqueue.lua, commit.lua, release.lua): idempotency records,
-- batch records and the writing of queued jobs.

-- A request's idempotency (`once`, jobs.rs's `Once`: key, ttl_s, digest, receipt; nil for
-- none) against its record (`P idem:{key}`, a hash of the request's digest, the receipt and
-- the batch it made, if any). Returns nil if the key is new, else the reply to give
-- (Answer): "repeated" with the first receipt and batch for the same request again,
-- "conflict" for the key reused on another request.
local function earlier_answer(once)
  if not once then return nil end
  local earlier = redis.call('HMGET', prefix .. 'idem:' .. once.key, 'digest', 'receipt', 'batch')
  if not earlier[1] then return nil end
  if earlier[1] ~= once.digest then return cjson.encode({ answer = 'conflict' }) end
  return cjson.encode({ answer = 'repeated', receipt = earlier[2], batch = earlier[3] or nil })
end

local function remember_answer(once, batch)
  if not once then return end
  local key = prefix .. 'idem:' .. once.key
  redis.call('HSET', key, 'digest', once.digest, 'receipt', once.receipt, 'batch', batch or '')
  redis.call('EXPIRE', key, once.ttl_s)
end

-- An error if this is the legacy partition of a ledger partitioned since it was created
-- (`P layout_since` beside it, at the home): its jobs made before stay here, and no new job
-- comes here; a client that read the layout before the ledger was partitioned must read it
-- again (the error names why).
local function refuse_in_legacy()
  if not split and redis.call('EXISTS', home .. 'layout_since') == 1 then
    return redis.error_reply('PARTITIONED this ledger was partitioned since this client '
      .. 'connected (reelq migrate --partitions): restart it to enqueue into its partitions')
  end
  return nil
end

-- The reply refusing a request that would take a tenant past its cap on fresh jobs waiting
-- (`max_waiting` in `P tenant_limits`), or nil. `waiting`: tenant -> its jobs in the request;
-- `elsewhere` (nil on one partition): tenant -> its jobs waiting in the other partitions.
local function over_backlog(waiting, elsewhere)
  for tenant, n in pairs(waiting) do
    local caps = redis.call('HGET', prefix .. 'tenant_limits', tenant)
    local max = caps and cjson.decode(caps).max_waiting
    if type(max) == 'number' then
      local now_waiting = redis.call('ZCARD', tenant_queue(tenant))
        + ((elsewhere and elsewhere[tenant]) or 0)
      if now_waiting + n > max then
        return cjson.encode({ answer = 'over_backlog', tenant = tenant, waiting = now_waiting,
          max = max })
      end
    end
  end
  return nil
end

-- The reply for `n_jobs` enqueued (Answer "new").
local function new_answer(n_jobs)
  return cjson.encode({ answer = 'new', n_jobs = n_jobs })
end

-- Records a batch of `n_jobs` with its options (name, start_after_ms, budget_micros,
-- low_priority, notify_url).
local function create_batch(batch, options, n_jobs, now)
  local info = { 'created_ms', now, 'total', n_jobs, 'open', n_jobs, 'reserved_micros', 0 }
  for _, field in ipairs({ 'name', 'start_after_ms', 'budget_micros', 'notify_url' }) do
    if options[field] then
      info[#info + 1] = field
      info[#info + 1] = tostring(options[field])
    end
  end
  if options.low_priority then info[#info + 1] = 'priority'; info[#info + 1] = 'low' end
  redis.call('HSET', prefix .. 'batchinfo:' .. batch, unpack(info))
  redis.call('ZADD', prefix .. 'batches', now, batch)
end

-- Writes jobs as queued: each a table (jobs.rs's `QueuedJob`) {id, provider, spec (its
-- JSON), deadline_ms (unix ms; absent: none), notify_url (absent: none), cost_micros (the
-- estimate in millionths of a dollar; 0: unpriced), tenant (absent: the default), route_hold
-- (a routed job with a candidate left: {patience_ms, on}; prelude's route_hold_fields)}. The spec goes
-- into the record in short pieces (`spec_fields`); until the ledger is migrated to schema 3
-- (`P schema`), workers of the release before may still be running, and read it only as one
-- `spec` field, so it is written that way instead. Jobs of a low-priority batch wait in
-- `P due_low`; the others in their tenant's queue (`P queued:{tenant}`, shared fairly by the
-- claim), or in `P due` until the ledger is migrated to schema 4 (a worker of the release
-- before reads only `P due`). A batch's start time is their first due time.
local function add_jobs(batch, low_priority, start_after_ms, jobs, now)
  local due_at = now
  if start_after_ms and start_after_ms > now then due_at = start_after_ms end
  local ids, queues, indexed = {}, {}, {}
  local schema = tonumber(redis.call('GET', prefix .. 'schema') or '0')
  local old_format = schema < COMPACT_RECORDS_SCHEMA
  for _, job in ipairs(jobs) do
    local id, provider, spec, deadline, notify_url, cost =
      job.id, job.provider, job.spec, job.deadline_ms, job.notify_url, job.cost_micros
    local fields = { 'state', 'queued', 'fence', 0, 'provider', provider,
      'created_ms', now, 'updated_ms', now, 'attempt', 0, 'submits', 0, 'polls', 0,
      'events', 1, 'e0', now .. ' queued' }
    if deadline then fields[#fields + 1] = 'deadline_ms'; fields[#fields + 1] = deadline end
    if notify_url then fields[#fields + 1] = 'notify_url'; fields[#fields + 1] = notify_url end
    if batch then fields[#fields + 1] = 'batch'; fields[#fields + 1] = batch end
    if cost > 0 then fields[#fields + 1] = 'cost_micros'; fields[#fields + 1] = cost end
    if job.tenant then fields[#fields + 1] = 'tenant'; fields[#fields + 1] = job.tenant end
    if job.route_hold then
      for _, v in ipairs(route_hold_fields(job.route_hold, due_at)) do fields[#fields + 1] = v end
    end
    if old_format then
      fields[#fields + 1] = 'spec'
      fields[#fields + 1] = spec
    else
      for _, v in ipairs(spec_fields(spec)) do fields[#fields + 1] = v end
    end
    redis.call('HSET', prefix .. 'job:' .. id, unpack(fields))
    local queue = prefix .. 'due'
    if low_priority then
      queue = prefix .. 'due_low'
    elseif schema >= TENANT_QUEUES_SCHEMA then
      queue = tenant_queue(job.tenant or 'default')
    end
    if not queues[queue] then
      queues[#queues + 1] = queue
      queues[queue] = {}
      if queue ~= prefix .. 'due' and queue ~= prefix .. 'due_low' then
        tenant_active(job.tenant or 'default')
      end
    end
    local scored = queues[queue]
    scored[#scored + 1] = due_at
    scored[#scored + 1] = id
    ids[#ids + 1] = id
    indexed[#indexed + 1] = now
    indexed[#indexed + 1] = id
  end
  -- Index and schedule in chunks: one command per chunk, not per job, and under Lua's limit
  -- on unpacked arguments.
  local CHUNK = 1000
  for _, queue in ipairs(queues) do
    local scored = queues[queue]
    for i = 1, #scored, 2 * CHUNK do
      redis.call('ZADD', queue, unpack(scored, i, math.min(i + 2 * CHUNK - 1, #scored)))
    end
  end
  for i = 1, #ids, CHUNK do
    local last = math.min(i + CHUNK - 1, #ids)
    redis.call('ZADD', prefix .. 'state:queued', unpack(indexed, 2 * i - 1, 2 * last))
    if batch then redis.call('RPUSH', prefix .. 'batch:' .. batch, unpack(ids, i, last)) end
  end
  if #ids > 0 then redis.call('PUBLISH', home .. 'wake', #ids) end
end
