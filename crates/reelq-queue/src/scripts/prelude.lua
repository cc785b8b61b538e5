-- Shared by every ledger script (prepended by `ledger_script!` in scripts.rs). ARGV[1] is the
-- key prefix of the slot the script runs in, e.g. "{reelq}:"; ARGV[2] is the script's
-- arguments as JSON (its `Args` in the Rust module beside it), read by name: `A.job_id`. A
-- field Rust sends as null is absent here (nil), never cjson's truthy null.
local prefix = ARGV[1]
-- The home of what is cluster-wide (keys.rs): ARGV[3] when it has a slot of its own (then the
-- script's home writes are effects, below), else the script's own slot.
local home = ARGV[3] or prefix
local split = home ~= prefix
-- While an operator moves this slot to another master (slot_move.rs), no script runs: one
-- that met a key already moved would fail half way with its earlier writes kept.
if redis.call('EXISTS', prefix .. 'moving') == 1 then
  return redis.error_reply('MOVING the ledger is being moved to another master; try again shortly')
end
local A = cjson.decode(ARGV[2])
for name, value in pairs(A) do
  if value == cjson.null then A[name] = nil end
end

-- Redis's clock, not the caller's: replicas with skewed clocks still agree on what is due.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Where a piece of `text` from byte `at`, at most `max` bytes long, ends on a whole UTF-8
-- character: before the continuation bytes (10xxxxxx) of a character it would split.
local function whole_chars_end(text, at, max)
  local last = math.min(at + max - 1, #text)
  while last < #text and last > at do
    local next_byte = string.byte(text, last + 1)
    if next_byte < 0x80 or next_byte >= 0xC0 then break end
    last = last - 1
  end
  return last
end

-- `text` on one line and cut to 64 bytes (a listpack value), on a character boundary; a
-- cut line ends with an ellipsis, so a reader knows there was more (the whole error is the
-- record's `error` field).
local function short_line(text)
  text = string.gsub(text, '[\r\n]', ' ')
  if #text <= 64 then return text end
  return string.sub(text, 1, whole_chars_end(text, 1, 61)) .. '\226\128\166'
end

-- A job's spec JSON (the prompt may be 20,000 characters) is kept in its record in pieces
-- of at most 64 bytes, cut at character boundaries (`s0`, `s1`, ...; `spec_n` counts them),
-- so a record of a usual spec stays a listpack (below); one with a spec of more than about
-- 3,000 bytes passes Redis's `hash-max-listpack-entries` (128) and becomes a hashtable,
-- which reads the same. Returns the field/value pairs.
local function spec_fields(spec)
  local set, n, at = {}, 0, 1
  while at <= #spec do
    local last = whole_chars_end(spec, at, 64)
    set[#set + 1] = 's' .. n
    set[#set + 1] = string.sub(spec, at, last)
    n, at = n + 1, last + 1
  end
  set[#set + 1] = 'spec_n'
  set[#set + 1] = n
  return set
end

-- How many spec pieces a reader asks for with the rest of the record (specs up to 512
-- bytes); a longer spec costs one more read.
local SPEC_READ = 8

-- The spec from a read of the record that gave `n` (its `spec_n`) and `first` (its first
-- SPEC_READ pieces, in order).
local function joined_spec(job, n, first)
  n = tonumber(n or '0')
  local pieces = {}
  for i = 1, math.min(n, SPEC_READ) do pieces[i] = first[i] or '' end
  if n > SPEC_READ then
    local names = {}
    for i = SPEC_READ, n - 1 do names[#names + 1] = 's' .. i end
    for _, piece in ipairs(redis.call('HMGET', job, unpack(names))) do
      pieces[#pieces + 1] = piece or ''
    end
  end
  return table.concat(pieces)
end

-- A job's event log lives in its record: the last EVENTS_KEPT events, one field each
-- (`e0`, `e1`, ..., reused in turn), "<ms> <state> <detail>" on one line cut to 64 bytes
-- (the full error and task id are fields of their own), and `events` counting all it ever
-- had. Short values keep the record one compact listpack (Redis's `hash-max-listpack-value`
-- is 64 bytes): a third of the memory of a hashtable, and no key of its own to write.
-- Returns the field/value pairs that add `text`; `count` is the record's `events` as the
-- caller read it (nil: looked up).
local function event_fields(job, now, text, count)
  if count == nil then count = redis.call('HGET', job, 'events') end
  count = tonumber(count or '0')
  return { 'events', count + 1, 'e' .. (count % EVENTS_KEPT), short_line(now .. ' ' .. text) }
end

-- Adds an event to a job's log outside a move.
local function log_event(job, now, text, count)
  redis.call('HSET', job, unpack(event_fields(job, now, text, count)))
end

-- The UTC month (`2026-12`) of a day counted from the Unix epoch (Hinnant's days-to-civil).
local function month_of(day)
  local z = day + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d', y, m)
end

-- A tenant's reserved spend on a UTC day and in its month (`P tenant_spend:{tenant}:{day}`,
-- `P tenant_spend:{tenant}:{YYYY-MM}`).
local function tenant_spend_keys(tenant, day)
  local base = home .. 'tenant_spend:' .. (tenant or 'default') .. ':'
  return base .. day, base .. month_of(day)
end

-- GCRA (a request rate of `rate` a second with a burst of `burst`): `tat` is when the
-- bucket is empty again; how long a call at `now` must wait (0: it may go, and then the
-- bucket's tat becomes max(tat, now) + 1000 / rate).
local function gcra_wait(tat, now, rate, burst)
  local wait = math.max(tat, now) - (1000 / rate) * (burst - 1) - now
  if wait > 0 then return math.ceil(wait) end
  return 0
end

-- What a move changes at the home (keys.rs) as data: `apply_home` is the one place each kind
-- is made. Where the home shares the script's slot, `at_home` makes it at once; where it has a
-- slot of its own, the script cannot reach it (the cluster refuses a key of another slot), so
-- the effects go back with the reply (`ledger_script!`'s wrapper) and Rust makes them next, in
-- the home's slot (home.lua). Each gives something back, so one lost between the two calls
-- errs on the safe side: a slot held until it expires, a reservation kept for the day.
--   free:    the job's in-flight slots, its account's and (`tenant`) its tenant's
--   hold:    an `uncertain` job keeps its account's slot (if it has one) until `until_ms`
--   release: a budget reservation of `cost` micros on UTC `day` (`flags`: "d" the account's
--            day, "t" the tenant's day, "m" the tenant's month)
--   index:   the provider task `task` of `account` is job `id`'s (`P task:{account}:{task}`),
--            for `ttl_ms`
local HOME_FX = {}
local function apply_home(e)
  if e.op == 'free' then
    redis.call('ZREM', home .. 'inflight:' .. e.account, e.id)
    if e.tenant then redis.call('ZREM', home .. 'tenant_inflight:' .. e.tenant, e.id) end
  elseif e.op == 'hold' then
    redis.call('ZADD', home .. 'inflight:' .. e.account, 'XX', e.until_ms, e.id)
  elseif e.op == 'release' then
    local keys = {}
    if string.find(e.flags, 'd', 1, true) then
      keys[#keys + 1] = home .. 'spend:' .. e.account .. ':' .. e.day
    end
    if string.find(e.flags, 't', 1, true) or string.find(e.flags, 'm', 1, true) then
      local day_key, month_key = tenant_spend_keys(e.tenant, e.day)
      if string.find(e.flags, 't', 1, true) then keys[#keys + 1] = day_key end
      if string.find(e.flags, 'm', 1, true) then keys[#keys + 1] = month_key end
    end
    for _, key in ipairs(keys) do
      if redis.call('EXISTS', key) == 1 then redis.call('DECRBY', key, e.cost) end
    end
  elseif e.op == 'index' then
    redis.call('SET', home .. 'task:' .. e.account .. ':' .. e.task, e.id, 'PX', e.ttl_ms)
  else
    error('unknown home effect ' .. tostring(e.op))
  end
end
local function at_home(e)
  if split then HOME_FX[#HOME_FX + 1] = e else apply_home(e) end
end

-- Which job owns provider task `task_id` of `account` in the home's task index: read here
-- where the home shares the slot; else the caller read it just before (A.task_owner, for
-- A.task_account). Returns the owner (nil: none) and whether it is known (false: the caller
-- read another account's).
local function task_owner_of(account, task_id)
  if not split then
    return redis.call('GET', home .. 'task:' .. account .. ':' .. task_id), true
  end
  if A.task_account ~= account then return nil, false end
  return A.task_owner, true
end

-- TERMINAL (the set of terminal states) is written before this file from Rust's JobState;
-- every legal move and its effects are listed in moves.rs.

-- Queues the completion webhook of a job that just ended, if it asked for one. Each ending
-- gets its own event id, kept across delivery retries so receivers can deduplicate.
-- `hash` is the job's (member: its id) or a batch's (`batchinfo:`; member `batch:<id>`).
-- `has_url`: whether the hash has a `notify_url`, if the caller read it (nil: looked up).
local function queue_notification(hash, member, now, has_url)
  if has_url == nil then has_url = redis.call('HEXISTS', hash, 'notify_url') == 1 end
  if not has_url then return end
  local seq = redis.call('HINCRBY', hash, 'notify_seq', 1)
  local event = 'evt_' .. string.gsub(member, ':', '_') .. '_' .. seq
  redis.call('HSET', hash, 'notify_event', event, 'notify_attempt', 0, 'notify_state', 'pending')
  redis.call('ZADD', prefix .. 'notify_due', now, member)
end

-- A batch counts its jobs not yet ended (`open`); when the last one ends, the batch's own
-- completion webhook (if it has a `notify_url`) is queued. A job brought back reopens it.
-- `batch`: the job's batch id or false, if the caller read it (nil: looked up).
local function count_batch_end(job, from, to, now, batch)
  local change = 0
  if TERMINAL[to] and not TERMINAL[from] then change = -1 end
  if TERMINAL[from] and not TERMINAL[to] then change = 1 end
  if change == 0 then return end
  if batch == nil then batch = redis.call('HGET', job, 'batch') end
  if not batch then return end
  local info = prefix .. 'batchinfo:' .. batch
  if redis.call('HINCRBY', info, 'open', change) == 0 then
    queue_notification(info, 'batch:' .. batch, now)
  end
end

-- A finished job's record expires after the deployment's retention (`P retention_ms`,
-- written by workers from their config; absent or 0: kept for ever), and its state index
-- drops entries older than that. A job brought back (an operator's retry) is kept again.
-- On a ledger not yet migrated (`P schema` below COMPACT_RECORDS_SCHEMA) a job may still have its
-- event log in a list of its own (`P log:{id}`), which goes with it.
local function retain(job, id, from, to, now)
  if TERMINAL[from] and not TERMINAL[to] then
    redis.call('PERSIST', job)
    redis.call('PERSIST', prefix .. 'log:' .. id)
    return
  end
  if not TERMINAL[to] then return end
  local settings = redis.call('MGET', prefix .. 'retention_ms', prefix .. 'schema')
  local retention = tonumber(settings[1] or '0')
  if retention <= 0 then return end
  redis.call('PEXPIRE', job, retention)
  if tonumber(settings[2] or '0') < COMPACT_RECORDS_SCHEMA then
    redis.call('PEXPIRE', prefix .. 'log:' .. id, retention)
  end
  -- The trim is amortised: about one ending in 16 (by Redis's millisecond) drops every
  -- expired entry, so the index holds a few more than retention allows, never unboundedly.
  if now % 16 == 0 then
    redis.call('ZREMRANGEBYSCORE', prefix .. 'state:' .. to, '-inf', now - retention)
  end
end

-- In-flight slots (`P inflight:{provider}`, taken by the claim of a queued job when limits are
-- set): a job may hold one in the states of HOLDS_SLOT, and entering a state of SLOT_FREE (its
-- generation over, or never begun) gives it back. `uncertain` keeps it for a bounded time
-- (its mover sets the expiry with hold_uncertain_slot).
-- (HOLDS_SLOT and SLOT_FREE are written before this file from moves.rs.)

-- Moves a job between states: state field, capped event log (with any `fields`, a flat list
-- of field/value pairs, all written in one HSET), per-state index, change feed, the
-- in-flight slot, and the completion webhook when the job ends. `provider` may be nil when
-- the caller has not read it; `known` (optional) carries fields the caller already read, so
-- they are not read again: `batch` (the id or false), `has_notify_url` (a boolean) and
-- `events` (the record's event count).
-- Gives back a job's in-flight slots when its generation is over or never began: its
-- account's, and its tenant's where the tenant is capped (`tslot` on the job: the claim took
-- one in `P tenant_inflight:{tenant}`). `known` may carry the job's `tslot` and `tenant` as
-- the caller read them (false: absent); otherwise they are read here.
local function free_slots(job, id, provider, known)
  provider = provider or redis.call('HGET', job, 'provider') or ''
  local tslot = known.tslot
  if tslot == nil then tslot = redis.call('HGET', job, 'tslot') end
  local tenant = nil
  if tslot then
    tenant = known.tenant
    if tenant == nil then tenant = redis.call('HGET', job, 'tenant') end
    tenant = tenant or 'default'
    redis.call('HDEL', job, 'tslot')
  end
  if split then
    -- A home of its own is reached by a call of its own: only for a job whose claim took an
    -- account's slot (`aslot`, settled.lua) or its tenant's.
    local aslot = redis.call('HGET', job, 'aslot')
    if not aslot and not tslot then return end
    if aslot then redis.call('HDEL', job, 'aslot') end
  end
  at_home({ op = 'free', account = provider, id = id, tenant = tenant })
end

local function move(job, id, from, to, now, detail, fields, provider, known)
  known = known or {}
  local set = event_fields(job, now, to .. ' ' .. detail, known.events)
  set[#set + 1] = 'state'
  set[#set + 1] = to
  set[#set + 1] = 'updated_ms'
  set[#set + 1] = now
  for _, v in ipairs(fields or {}) do set[#set + 1] = v end
  redis.call('HSET', job, unpack(set))
  redis.call('ZREM', prefix .. 'state:' .. from, id)
  redis.call('ZADD', prefix .. 'state:' .. to, now, id)
  redis.call('PUBLISH', home .. 'changes', id .. ' ' .. to)
  if HOLDS_SLOT[from] and SLOT_FREE[to] then free_slots(job, id, provider, known) end
  if TERMINAL[to] then queue_notification(job, id, now, known.has_notify_url) end
  count_batch_end(job, from, to, now, known.batch)
  retain(job, id, from, to, now)
end

-- An `uncertain` job keeps its in-flight slot (only if it holds one) until `hold_ms` from now.
local function hold_uncertain_slot(provider, id, now, hold_ms)
  if hold_ms >= 0 then
    at_home({ op = 'hold', account = provider, id = id, until_ms = now + hold_ms })
  end
end

-- Gives back what a job's submit reserved against its batch budget, its provider's daily
-- budget and its tenant's daily and monthly budgets (`reserved`: of "b", "d", "t", "m",
-- written by claim, on UTC day `day`), when the create was refused or the job will never be
-- submitted. The caller clears the job's `reserved` field.
local function release_budget(batch, provider, cost, reserved, day, tenant)
  cost = tonumber(cost or '0')
  if not reserved or reserved == '' or cost <= 0 then return end
  if batch and string.find(reserved, 'b', 1, true) then
    redis.call('HINCRBY', prefix .. 'batchinfo:' .. batch, 'reserved_micros', -cost)
  end
  -- (A reservation with no day recorded reserved nothing but the batch's.)
  local flags = string.gsub(reserved, 'b', '')
  if flags ~= '' and tonumber(day) then
    at_home({ op = 'release', account = provider, day = tonumber(day), cost = cost,
      flags = flags, tenant = tenant or 'default' })
  end
end

-- Sets when a worker should next act on a job: in delay_ms, or never (a negative delay).
local function schedule(due, id, now, delay_ms)
  if delay_ms >= 0 then
    redis.call('ZADD', due, now + delay_ms, id)
  else
    redis.call('ZREM', due, id)
  end
end

-- A routed job with a candidate after the one it is at keeps in its record when it may leave
-- that one (`fb_ms`: `from_ms` plus the route's patience) and for what (`fb_on`: `p` a pause,
-- `w` a limit); the claim hands such a job, held back past `fb_ms`, to a worker to move on.
-- Returns the field/value pairs.
local function route_hold_fields(hold, from_ms)
  return { 'fb_ms', from_ms + hold.patience_ms, 'fb_on', hold.on }
end

-- Tenants (claim.lua shares capacity between them): a tenant's fresh queued jobs wait in its
-- queue, and `P tenants` ranks the tenants with jobs there by tag (the virtual time at which
-- its next job starts).
local function tenant_queue(tenant)
  return prefix .. 'queued:' .. tenant
end

-- A tenant with jobs waiting joins the ranking (if it is not in it) at the tag last served
-- (`P vclock`), or its own last tag if that is later (`P tenant_tags`, kept when it went
-- idle): idling earns a tenant no credit, and a newcomer is served in the next claim.
local function tenant_active(tenant)
  local tenants = prefix .. 'tenants'
  if redis.call('ZSCORE', tenants, tenant) then return end
  local clock = tonumber(redis.call('GET', prefix .. 'vclock') or '0')
  local last = tonumber(redis.call('HGET', prefix .. 'tenant_tags', tenant) or '0')
  redis.call('ZADD', tenants, math.max(clock, last), tenant)
end

-- Takes a job out of the queues fresh jobs wait in (its tenant's, and `P due_low`), when it
-- leaves `queued` by someone else's hand than the claim's.
local function unqueue(job, id)
  redis.call('ZREM', tenant_queue(redis.call('HGET', job, 'tenant') or 'default'), id)
  redis.call('ZREM', prefix .. 'due_low', id)
end
