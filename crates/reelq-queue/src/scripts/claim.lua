-- Takes up to N due jobs for one worker, each under a fresh fence.
-- Args (claim.rs): max_jobs (N); lease_ms (the lease length: the job's due time becomes now +
-- lease, so if the worker dies the job falls due again and another worker takes it with a
-- higher fence); owner (the worker's name, recorded for operators); resubmit_uncertain
-- (requeue a submit whose lease expired, an operator's opt-in, instead of parking it as
-- `uncertain`); limits (below); token (the claim's, stored on each job it takes: moves must
-- name it with the fence, so a fence number repeated after Redis lost writes names no live
-- lease); pools (the worker's accounts by contract, in its config's order: jobs of other
-- accounts are left due for replicas that have them, at most SCAN_LIMIT of them stepped over).
-- Reply: {now_ms, next_due_ms (when nothing was taken: the next due time; absent if none),
--   claimed = {{id, state, fence, spec, task_id, attempt, result_url, polls, account,
--   low_priority (a queued job of a low-priority batch), cancel_requested (a waiting job an
--   operator asked to cancel), cancel_answered (the provider answered that ask), fall_back (a
--   routed job held back past its route's patience: "paused" or "slot_wait"; the worker moves
--   it on to its next candidate)}, ...},
--   waits = {{account, limit = "rate", "in_flight" or "daily_budget"}, one per job held back}}.
-- A job's `provider` field names the account its limits, pause and budgets are kept under.
-- A queued job that asked only for a provider (the field holds the contract's name, e.g.
-- `kie`) and has reserved nothing yet goes to the first of this worker's accounts of that
-- contract that is not paused, has a generation slot and a request token; the field then
-- names that account, and keeps naming it once the job is submitted (its task lives there).
-- A claimed queued job stays `queued`: the worker moves it to `submitting` (BeginSubmit) only
-- once it holds the reply, so a claim whose reply is lost never looks like a sent submit.
-- A job found `submitting` is one whose submitter's lease ran out: if a callback named its
-- task (`task_id_hint`) it goes on to polling; otherwise the provider may have the
-- task, so it becomes `uncertain` and is never handed out for a second submit (unless
-- resubmit_uncertain).
-- A queued job whose provider is paused (`P pause:{provider}`, set on a 429) is left
-- unclaimed and rescheduled for the end of the pause.
-- Limits are cluster-wide, by provider account: {rate (requests/s), burst, slots
-- (generations in flight), ttl_ms (a slot's), daily_micros (the daily budget),
-- uncertain_ttl_ms}, 0 or absent = no limit. Every provider call (a submit or a poll) takes a token
-- from a GCRA bucket `P rate:{provider}`; a submit also takes a generation slot in
-- `P inflight:{provider}` (zset: job -> expiry), released when the generation ends
-- (prelude's SLOT_FREE), renewed by each poll, so a lost job's slot comes back after the
-- ttl. A job a limit holds back is rescheduled for when it may go, and named in the reply's
-- waits.
-- Where the home has a slot of its own (`split`), this script cannot reach it: it decides from
-- `view` (A.view: what claim_view.lua read at the home just before, by account {pause_ms,
-- tat, used, spent} and by capped tenant {used, day, month}), and what each job it hands out
-- takes at the home (a request token, slots, budget) goes back as that job's `take` effect
-- (`cur`, below): home.lua makes it only if the home still allows all of it, and the claim
-- puts back a job it refused (settled.lua), which until then holds nothing at the home. The
-- fields a take earns the job's record (`reserved`, `tslot`, `aslot`) are written only once it
-- is made.
local due = prefix .. 'due'
local view = A.view
-- What the job being looked at takes at the home (split only; see hand_out).
local cur = {}
local max_n, lease_ms, owner = A.max_jobs, A.lease_ms, A.owner
local resubmit_uncertain = A.resubmit_uncertain
local token = A.token
local serves, pools = {}, {}
for contract, accounts in pairs(A.pools) do
  pools[contract] = accounts
  for _, account in ipairs(accounts) do serves[account] = true end
end
local SCAN_LIMIT = 1000
local paused = {}
local now = now_ms()

local limits = {}
for account, l in pairs(A.limits) do
  limits[account] = { rate = l.rate or 0, burst = math.max(1, l.burst), slots = l.slots or 0,
    ttl = l.ttl_ms or 0, daily = l.daily_micros or 0, uncertain_ttl = l.uncertain_ttl_ms or 0 }
end
local waits = {}

-- GCRA: `tat` is when the bucket is empty again; a call may go while tat - now is within the
-- burst. Loaded once per account and written back at the end. `rate_peek` tells how long a
-- call must wait without taking a token; `rate_wait` takes one when the call may go.
local function rate_peek(account)
  local l = limits[account]
  if not l or l.rate <= 0 then return 0 end
  if l.tat == nil then
    if view then
      l.tat = (view.accounts[account] or {}).tat or 0
    else
      l.tat = tonumber(redis.call('GET', home .. 'rate:' .. account) or '0')
    end
  end
  return gcra_wait(l.tat, now, l.rate, l.burst)
end

local function rate_wait(account)
  local wait = rate_peek(account)
  local l = limits[account]
  if wait == 0 and l and l.rate > 0 then
    l.tat = math.max(l.tat, now) + 1000 / l.rate
    if view then cur.rate = { rate = l.rate, burst = l.burst } end
  end
  return wait
end

-- Generation slots: expired ones are dropped once per provider per claim.
local function slots_full(provider)
  local l = limits[provider]
  if not l or l.slots <= 0 then return false end
  local key = home .. 'inflight:' .. provider
  if l.used == nil and view then
    l.used = (view.accounts[provider] or {}).used or 0
  elseif l.used == nil then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    l.used = redis.call('ZCARD', key)
  end
  return l.used >= l.slots
end

local function hold_back(queue, id, provider, kind, wait_ms)
  redis.call('ZADD', queue, now + wait_ms, id)
  waits[#waits + 1] = { account = provider, limit = kind }
end

-- Budgets, in millionths of a dollar: a submit reserves its job's estimate against its
-- batch's budget (`P batchinfo:{batch}`) and its provider account's daily budget
-- (`P spend:{provider}:{utc day}`), once per job (`reserved`), before it is claimed.
-- Returns nil and what it reserved against (of "b" batch, "d" the account's day, "t" the
-- tenant's day, "m" the tenant's month; "" none) or the budget that is spent: "batch",
-- "daily" or "tenant". Every budget is checked before any is reserved.
local DAY_MS = 86400000
local day = math.floor(now / DAY_MS)
local batches = {}

-- A tenant's caps (`P tenant_limits`, read once per tenant per claim): `max` generations in
-- flight, `daily` and `monthly` budgets in millionths of a dollar (0: none).
local tenant_caps = {}
local function tenant_cap(tenant)
  if tenant_caps[tenant] == nil then
    local caps = redis.call('HGET', prefix .. 'tenant_limits', tenant)
    caps = caps and cjson.decode(caps) or {}
    local function number(value) return type(value) == 'number' and value or 0 end
    tenant_caps[tenant] = { max = number(caps.max_in_flight), daily = number(caps.daily_micros),
      monthly = number(caps.monthly_micros) }
  end
  return tenant_caps[tenant]
end

-- A tenant's spend reserved today and this month, read once per tenant per claim.
local function tenant_spent(tenant, cap)
  if cap.spent_day == nil then
    cap.day_key, cap.month_key = tenant_spend_keys(tenant, day)
    if view then
      local seen = view.tenants[tenant] or {}
      cap.spent_day, cap.spent_month = seen.day or 0, seen.month or 0
    else
      local v = redis.call('MGET', cap.day_key, cap.month_key)
      cap.spent_day, cap.spent_month = tonumber(v[1] or '0'), tonumber(v[2] or '0')
    end
  end
  return cap
end

local function over_budget(provider, batch, cost, reserved, tenant)
  if reserved or cost <= 0 then return nil, '' end
  local cap = tenant_cap(tenant)
  if cap.daily > 0 or cap.monthly > 0 then
    tenant_spent(tenant, cap)
    if cap.daily > 0 and cap.spent_day + cost > cap.daily then return 'tenant' end
    if cap.monthly > 0 and cap.spent_month + cost > cap.monthly then return 'tenant' end
  end
  local b
  if batch then
    b = batches[batch]
    if b == nil then
      local v = redis.call('HMGET', prefix .. 'batchinfo:' .. batch, 'budget_micros', 'reserved_micros')
      b = { budget = tonumber(v[1]), reserved = tonumber(v[2] or '0') }
      batches[batch] = b
    end
    if b.budget and b.reserved + cost > b.budget then return 'batch' end
  end
  local l = limits[provider]
  local daily = l and l.daily > 0
  local spend_key = home .. 'spend:' .. provider .. ':' .. day
  if daily then
    if l.spent == nil and view then
      l.spent = (view.accounts[provider] or {}).spent or 0
    elseif l.spent == nil then
      l.spent = tonumber(redis.call('GET', spend_key) or '0')
    end
    if l.spent + cost > l.daily then return 'daily' end
  end
  local flags = ''
  if b and b.budget then
    b.reserved = b.reserved + cost
    redis.call('HINCRBY', prefix .. 'batchinfo:' .. batch, 'reserved_micros', cost)
    flags = 'b'
  end
  -- Adds the cost to a spend counter kept `days` days, capped at `cap` (a split claim's take
  -- names the limit, in the claim's waits' words, that refuses it).
  local function spend(key, days, cap_micros, limit)
    if view then
      cur.cost = cost
      cur.spend = cur.spend or {}
      cur.spend[#cur.spend + 1] = { key = key, cap = cap_micros, days = days, limit = limit }
    else
      redis.call('INCRBY', key, cost)
      redis.call('PEXPIRE', key, days * DAY_MS)
    end
  end
  if daily then
    l.spent = l.spent + cost
    spend(spend_key, 2, l.daily, 'daily_budget')
    flags = flags .. 'd'
  end
  if cap.daily > 0 then
    cap.spent_day = cap.spent_day + cost
    spend(cap.day_key, 2, cap.daily, 'tenant_budget')
    flags = flags .. 't'
  end
  if cap.monthly > 0 then
    cap.spent_month = cap.spent_month + cost
    spend(cap.month_key, 62, cap.monthly, 'tenant_budget')
    flags = flags .. 'm'
  end
  if view and b and b.budget then cur.batch_cost = cost end
  return nil, flags
end

-- A batch's flags, read once per batch per claim: whether an operator has begun cancelling it
-- (batch.lua cancels its jobs a chunk at a time; until it reaches one, the claim must not hand
-- it out) and whether it is low priority (the submit passes that on as a provider's hint).
local batch_flags = {}
local function flags_of(batch)
  if batch_flags[batch] == nil then
    local f = redis.call('HMGET', prefix .. 'batchinfo:' .. batch, 'cancelled_ms', 'priority')
    batch_flags[batch] = { cancelled = f[1] ~= false, low = f[2] == 'low' }
  end
  return batch_flags[batch]
end

-- Whether submits to `account` are paused (read once per account per claim).
local function pause_left(account)
  if paused[account] == nil and view then
    paused[account] = (view.accounts[account] or {}).pause_ms or -2
  elseif paused[account] == nil then
    paused[account] = redis.call('PTTL', home .. 'pause:' .. account)
  end
  return paused[account]
end

-- The account a queued job asking for `contract` goes to: the first free one, else the
-- first (whose limit then holds the job back).
local function pick_account(contract)
  local pool = pools[contract]
  for _, account in ipairs(pool) do
    if pause_left(account) <= 0 and not slots_full(account) and rate_peek(account) == 0 then
      return account
    end
  end
  return pool[1]
end

-- What a claim reads of each record: `spec` only a record written before ledger schema 3
-- has; `spec_n` is 17 and the first pieces of the spec (`spec_fields`) come at 23 and after.
local RECORD_READ = { 'state', 'deadline_ms', 'spec', 'task_id', 'attempt', 'result_url', 'polls',
  'provider', 'task_id_hint', 'fence', 'batch', 'cost_micros', 'reserved', 'cancel_ms', 'events',
  'cancel_answered', 'spec_n', 'tenant', 'tslot', 'woken', 'fb_ms', 'fb_on', 'bpending' }
for i = 0, SPEC_READ - 1 do RECORD_READ[#RECORD_READ + 1] = 's' .. i end

-- Tenants' caps on generations in flight (`max_in_flight` in `P tenant_limits`), read once per
-- tenant per claim; a capped tenant's slots are `P tenant_inflight:{tenant}` (zset: job ->
-- expiry), taken with the account's slot and renewed with it by each poll.
local TENANT_SLOT_TTL = 3600000
local function tenant_full(tenant)
  local cap = tenant_cap(tenant)
  if cap.max <= 0 then return false end
  if cap.used == nil and view then
    cap.used = (view.tenants[tenant] or {}).used or 0
  elseif cap.used == nil then
    local key = home .. 'tenant_inflight:' .. tenant
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    cap.used = redis.call('ZCARD', key)
  end
  return cap.used >= cap.max
end

local due_low = prefix .. 'due_low'
local claimed = {}
-- Hands a job to this worker under a fresh fence: `set` (field/value pairs) is written with
-- the lease; `fall_back` (a held-back routed job's reason) asks the worker to move it on to its
-- route's next candidate instead of submitting it.
local leave_at
-- A split claim's job that takes anything at the home leaves the fields its take earns
-- (`GRANTED`) to settled.lua, with what putting it back needs.
local GRANTED = { reserved = true, reserved_day = true }
local function hand_out(queue, job, id, f, state, provider, set, fall_back)
  local fence = tonumber(f[10] or '0') + 1
  local fields = { 'fence', fence, 'token', token, 'owner', owner }
  local takes = view and (cur.rate or cur.slot or cur.renew or cur.tslot or cur.trenew or cur.spend)
  if takes then
    local grant = { tslot = cur.tslot ~= nil, aslot = cur.slot ~= nil }
    for i = 1, #set, 2 do
      if GRANTED[set[i]] then
        grant[set[i]] = set[i + 1]
      else
        fields[#fields + 1], fields[#fields + 2] = set[i], set[i + 1]
      end
    end
    -- The batch's budget is reserved here, the job's record of it (`reserved`) written by
    -- the settle: until then `bpending` says what to give back if the settle never comes.
    if (cur.batch_cost or 0) > 0 then
      fields[#fields + 1], fields[#fields + 2] = 'bpending', cur.batch_cost
    end
    at_home({ op = 'take', id = id, account = provider, rate = cur.rate, slot = cur.slot,
      renew = cur.renew, tslot = cur.tslot, trenew = cur.trenew, spend = cur.spend,
      cost = cur.cost or 0,
      back = { fence = fence, queue = queue, provider = f[8] or '', batch = f[11] or nil,
        batch_cost = cur.batch_cost or 0, grant = grant, leave_at = leave_at(f, state),
        tenant = (queue ~= due and queue ~= due_low) and (f[18] or 'default') or nil } })
  else
    for _, v in ipairs(set) do fields[#fields + 1] = v end
  end
  redis.call('HSET', job, unpack(fields))
  if queue ~= due then redis.call('ZREM', queue, id) end
  redis.call('ZADD', due, now + lease_ms, id)
  local low = state == 'queued' and f[11] and flags_of(f[11]).low
  local cancel_requested = state == 'waiting' and f[14] ~= false
  local spec = f[3] or joined_spec(job, f[17], { unpack(f, 24, 23 + SPEC_READ) })
  local woken = state == 'waiting' and f[20] ~= false
  if f[20] then redis.call('HDEL', job, 'woken') end
  claimed[#claimed + 1] = { id = id, state = state, fence = fence, spec = spec,
    task_id = f[4] or nil, attempt = tonumber(f[5] or '0'), result_url = f[6] or nil,
    polls = tonumber(f[7] or '0'), account = provider, low_priority = low and true or false,
    cancel_requested = cancel_requested,
    cancel_answered = cancel_requested and f[16] ~= false, woken = woken, fall_back = fall_back }
end

-- Whether a queued routed job held back for `wait_ms` leaves its candidate instead: its
-- record's `fb_ms` (prelude's route_hold_fields) is when its route's patience ends and `fb_on`
-- what it moves on for (`p` a pause, `w` a limit: `kind`); it leaves when it would still be
-- waiting then.
local function leaves(f, state, kind, wait_ms)
  local fb_ms = tonumber(f[21] or '')
  if state ~= 'queued' or not fb_ms then return false end
  return string.find(f[22] or '', kind, 1, true) ~= nil and now + wait_ms > fb_ms
end
-- When a queued routed job a limit holds back leaves its candidate instead (for a split claim's
-- take the home refuses: settled.lua), or nil.
function leave_at(f, state)
  if state ~= 'queued' or not string.find(f[22] or '', 'w', 1, true) then return nil end
  return tonumber(f[21] or '')
end
-- Acts on one due job of `queue`; false if the job's provider is not served here (left due).
local function take(queue, id)
  if view then cur = {} end
  local job = prefix .. 'job:' .. id
  local f = redis.call('HMGET', job, unpack(RECORD_READ))
  local tenant = f[18] or 'default'
  local known = { events = f[15], tenant = f[18], tslot = f[19] }
  local state, deadline, provider = f[1], tonumber(f[2]), f[8] or ''
  if f[23] and f[11] then
    -- A split claim reserved its batch's budget for this job and its worker died before the
    -- settle wrote it into the job: given back, to be reserved again if it is handed out.
    local cost = tonumber(f[23]) or 0
    redis.call('HINCRBY', prefix .. 'batchinfo:' .. f[11], 'reserved_micros', -cost)
    redis.call('HDEL', job, 'bpending')
    if batches[f[11]] then batches[f[11]].reserved = batches[f[11]].reserved - cost end
  end
  local picked = false
  if state == 'queued' and (f[13] or '') == '' and pools[provider] then
    provider, picked = pick_account(provider), true
  end
  if state and not serves[provider] then
    -- A routed job no worker took at its candidate within its route's patience (no replica
    -- has the account, or none had room) moves on, by whichever worker finds it.
    if state == 'queued' and (f[13] or '') == '' and leaves(f, state, 'w', 0) then
      hand_out(queue, job, id, f, state, provider, {}, 'slot_wait')
      return true
    end
    return false
  end
  -- The account a queued job goes to is written with its lease.
  local chosen = picked and { 'provider', provider } or {}
  if state == 'queued' then pause_left(provider) end
  if not state then
    redis.call('ZREM', queue, id)
  elseif (state == 'queued' or state == 'waiting') and deadline and deadline <= now then
    redis.call('ZREM', queue, id)
    local ended = { 'error_class', 'invalid', 'error', 'deadline passed before the job finished' }
    if state == 'queued' and (f[13] or '') ~= '' then
      -- Reserved by an earlier claim whose submit never began: nothing was spent.
      release_budget(f[11], provider, f[12], f[13], redis.call('HGET', job, 'reserved_day'), f[18])
      ended[#ended + 1], ended[#ended + 2] = 'reserved', ''
    end
    move(job, id, state, 'expired', now, 'deadline passed', ended, provider, known)
  elseif state == 'queued' and f[11] and flags_of(f[11]).cancelled then
    redis.call('ZREM', queue, id)
    release_budget(f[11], provider, f[12], f[13], redis.call('HGET', job, 'reserved_day'), f[18])
    move(job, id, state, 'cancelled', now, 'batch cancelled', { 'reserved', '' }, provider, known)
  elseif state == 'queued' and paused[provider] > 0 then
    if leaves(f, state, 'p', paused[provider]) then
      hand_out(queue, job, id, f, state, provider, chosen, 'paused')
    else
      redis.call('ZADD', queue, now + paused[provider], id)
    end
  elseif state == 'submitting' and f[9] then
    -- The submitter died, but the provider's callback already named the task: poll it.
    redis.call('ZADD', due, now, id)
    move(job, id, state, 'waiting', now, 'its callback named the task; submitter gone',
      { 'task_id', f[9], 'attempt', 0, 'fence', tonumber(f[10] or '0') + 1 }, provider, known)
  elseif state == 'submitting' and resubmit_uncertain then
    redis.call('ZADD', due, now, id)
    move(job, id, state, 'queued', now, 'submit lease expired; requeued by policy',
      { 'error', 'submit lease expired; requeued by policy' }, provider, known)
  elseif state == 'submitting' then
    redis.call('ZREM', due, id)
    move(job, id, state, 'uncertain', now, 'submit lease expired',
      { 'error_class', 'unknown_outcome', 'error', 'submit lease expired before the provider answered' },
      provider, known)
    local l = limits[provider]
    if l then hold_uncertain_slot(provider, id, now, l.uncertain_ttl) end
  elseif state == 'queued' and slots_full(provider) and leaves(f, state, 'w', 1000) then
    hand_out(queue, job, id, f, state, provider, chosen, 'slot_wait')
  elseif state == 'queued' and slots_full(provider) then
    -- A generation ends within seconds to minutes; look again in a second.
    hold_back(queue, id, provider, 'in_flight', 1000)
  elseif state == 'queued' and not f[19] and tenant_full(tenant) then
    -- (A job claimed before whose submit never began holds its slot already: not counted
    -- against itself.)
    hold_back(queue, id, provider, 'tenant_in_flight', 1000)
  elseif (state == 'queued' or state == 'waiting') and rate_wait(provider) > 0 then
    if leaves(f, state, 'w', rate_wait(provider)) then
      hand_out(queue, job, id, f, state, provider, chosen, 'slot_wait')
    else
      hold_back(queue, id, provider, 'rate', rate_wait(provider))
    end
  elseif state == 'queued' or state == 'waiting' or state == 'fetching' then
    local spent, reserved = nil, ''
    if state == 'queued' then
      spent, reserved = over_budget(provider, f[11], tonumber(f[12] or '0'), (f[13] or '') ~= '',
        tenant)
    end
    if spent == 'batch' then
      -- Kept, never submitted, until an operator raises the budget (`reelq batch resume`).
      redis.call('ZREM', queue, id)
      move(job, id, state, 'budget_held', now, 'batch budget reached', nil, provider, known)
    elseif spent == 'daily' and leaves(f, state, 'w', DAY_MS * (day + 1) - now) then
      hand_out(queue, job, id, f, state, provider, chosen, 'slot_wait')
    elseif spent == 'daily' then
      hold_back(queue, id, provider, 'daily_budget', DAY_MS * (day + 1) - now)
    elseif spent == 'tenant' then
      -- Its tenant's budget for the day (or month) is spent: looked at again tomorrow.
      hold_back(queue, id, provider, 'tenant_budget', DAY_MS * (day + 1) - now)
    else
      local l = limits[provider]
      if l and l.slots > 0 and state ~= 'fetching' then
        -- Taken by a submit, renewed by a poll (XX: only a job that holds one).
        local key = home .. 'inflight:' .. provider
        if view and state == 'queued' then
          cur.slot = { cap = l.slots, until_ms = now + l.ttl }
          l.used = l.used + 1
        elseif view then
          cur.renew = now + l.ttl
        elseif state == 'queued' then
          l.used = l.used + redis.call('ZADD', key, now + l.ttl, id)
        else
          redis.call('ZADD', key, 'XX', now + l.ttl, id)
        end
      end
      -- A capped tenant's slot, taken and renewed with the account's, given back with it
      -- (prelude's free_slots; the job's `tslot` says it holds one).
      local tslot_key = home .. 'tenant_inflight:' .. tenant
      local tslot_ttl = (l and l.ttl > 0 and l.ttl) or TENANT_SLOT_TTL
      if state == 'queued' and tenant_cap(tenant).max > 0 then
        local cap = tenant_cap(tenant)
        if view then
          cur.tslot = { tenant = tenant, cap = cap.max, until_ms = now + tslot_ttl }
          cap.used = cap.used + 1
        else
          cap.used = cap.used + redis.call('ZADD', tslot_key, now + tslot_ttl, id)
          redis.call('HSET', job, 'tslot', 1)
        end
      elseif state == 'waiting' and f[19] and view then
        cur.trenew = { tenant = tenant, until_ms = now + tslot_ttl }
      elseif state == 'waiting' and f[19] then
        redis.call('ZADD', tslot_key, 'XX', now + tslot_ttl, id)
      end
      if reserved ~= '' then
        hand_out(queue, job, id, f, state, provider,
          { 'reserved', reserved, 'reserved_day', day, 'provider', provider })
      else
        hand_out(queue, job, id, f, state, provider, chosen)
      end
    end
  else
    redis.call('ZREM', queue, id)
  end
  return true
end

-- Takes up to `want` due jobs of `queue`. Every job acted on leaves the due range (claimed,
-- rescheduled or removed), so the next page starts after the jobs stepped over.
local scanned = 0
local function take_from(queue, want)
  local stepped_over = 0
  while want > 0 and scanned < SCAN_LIMIT do
    local page = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'LIMIT', stepped_over, want)
    if #page == 0 then return end
    for _, id in ipairs(page) do
      scanned = scanned + 1
      if take(queue, id) then want = want - 1 else stepped_over = stepped_over + 1 end
    end
  end
end

-- Fair share between tenants (start-time fair queuing): a tenant's fresh jobs wait in its
-- queue (`P queued:{tenant}`, by due time) and `P tenants` ranks the tenants with jobs there
-- by tag, the virtual time at which the tenant's next job starts. The claim serves the
-- tenant with the lowest tag that has a job due for this worker's accounts, and moves its
-- tag on by 1/weight per job taken (`P tenant_weights`, 1 unless an operator set one), so
-- while tenants wait each is served in proportion to its weight, and a tenant that joins is
-- served in the next claim (prelude's tenant_active). Jobs are taken from one tenant while
-- its tag stays at or below the next tenant's, in one read. A job held back by its account's
-- limits costs its tenant nothing; a tenant whose queue empties leaves the ranking, its tag
-- kept (`P tenant_tags`). `P vclock` is the tag last served.
local tenants_key = prefix .. 'tenants'
local weights = {}
local function weight_of(tenant)
  if weights[tenant] == nil then
    local w = tonumber(redis.call('HGET', prefix .. 'tenant_weights', tenant) or '1')
    if not w or w <= 0 then w = 1 end
    weights[tenant] = w
  end
  return weights[tenant]
end
-- Tenants at their cap on generations in flight in this claim: their queue's head is due, but
-- nothing of theirs can go before a slot frees, so an idle worker looks again in a second.
local capped = {}
local function take_fairly(want)
  -- The tenants passed over in this claim are always the lowest-ranked ones (each was the
  -- lowest not passed when it was, and the tags of the others only grow), so the next to
  -- serve is at rank `n_passed`.
  local n_passed, offset = 0, {}
  local function pass()
    n_passed = n_passed + 1
    scanned = scanned + 1
  end
  -- Takes up to `share` of `tenant`'s due jobs (its tag `tag`); false to pass it over.
  local function serve(tenant, tag, share)
    local w = weight_of(tenant)
    local queue = tenant_queue(tenant)
    local page = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'LIMIT', offset[tenant] or 0, share)
    if #page == 0 then
      if redis.call('EXISTS', queue) == 0 then
        -- Idle: out of the ranking, its tag kept for when it comes back.
        redis.call('ZREM', tenants_key, tenant)
        redis.call('HSET', prefix .. 'tenant_tags', tenant, tag)
        return true
      end
      return false
    end
    local taken, stepped_over = 0, 0
    for _, id in ipairs(page) do
      scanned = scanned + 1
      local before = #claimed
      if not take(queue, id) then
        stepped_over = stepped_over + 1
      elseif #claimed > before then
        taken = taken + 1
      end
    end
    offset[tenant] = (offset[tenant] or 0) + stepped_over
    if taken > 0 then
      want = want - taken
      redis.call('SET', prefix .. 'vclock', tag + (taken - 1) / w)
      redis.call('ZINCRBY', tenants_key, taken / w, tenant)
      return true
    end
    -- Everything it had due was held back by its accounts' limits (and rescheduled): the
    -- others go first in this claim. Jobs of other replicas' accounts are stepped over.
    return stepped_over > 0
  end
  while want > 0 and scanned < SCAN_LIMIT do
    -- The lowest-ranked tenant not passed over in this claim, and the tag of the one after.
    local ranked = redis.call('ZRANGE', tenants_key, n_passed, n_passed + 1, 'WITHSCORES')
    if #ranked == 0 then return end
    local tenant, tag, next_tag = ranked[1], tonumber(ranked[2]), tonumber(ranked[4])
    if tenant_full(tenant) then
      -- At its cap on generations in flight: passed over, its jobs left due (not held back
      -- one by one).
      capped[tenant] = true
      pass()
    else
      local share = want
      if next_tag then
        share = math.min(share, math.floor((next_tag - tag) * weight_of(tenant)) + 1)
      end
      local cap = tenant_cap(tenant)
      if cap.max > 0 then share = math.min(share, cap.max - cap.used) end
      if not serve(tenant, tag, share) then pass() end
    end
  end
end

-- Work already begun first (polls, fetches, retries); then the tenants' fresh jobs, shared
-- fairly; low-priority ones (`P due_low`, queued only) fill what is left.
take_from(due, max_n)
take_fairly(max_n - #claimed)
take_from(due_low, max_n - #claimed)
for provider, l in pairs(limits) do
  if not view and l.tat ~= nil and l.tat > now then
    redis.call('SET', home .. 'rate:' .. provider, l.tat, 'PX', math.ceil(l.tat - now) + 1000)
  end
end
local next_due = -1
if #claimed == 0 then
  local queues = { due, due_low }
  local later = {}
  for _, tenant in ipairs(redis.call('ZRANGE', tenants_key, 0, 15)) do
    queues[#queues + 1] = tenant_queue(tenant)
    if capped[tenant] then later[tenant_queue(tenant)] = now + 1000 end
  end
  for _, queue in ipairs(queues) do
    local first = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
    local at = first[2] and math.max(tonumber(first[2]), later[queue] or 0)
    if at and (next_due < 0 or at < next_due) then next_due = at end
  end
end
if next_due < 0 then next_due = nil end
return cjson.encode({ now_ms = now, next_due_ms = next_due, claimed = claimed, waits = waits })
