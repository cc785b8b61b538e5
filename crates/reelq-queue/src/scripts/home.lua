-- Makes in the home's slot the home effects a script run in another slot left, in the order
-- it left them: where the home has a slot of its own. Those that give something back are
-- made by the prelude's `apply_home` (where each kind is described). A `take` is what one job
-- a claim handed out takes at the home (claim.lua decided it from a view of the home read
-- before it: claim_view.lua); it is made only if the home still allows all of it now, else
-- none of it, and the job is named in `refused` (the claim then puts it back: settled.lua):
--   rate:   {rate, burst}: a request token of the account's bucket (`P rate:{account}`)
--   slot:   {cap, until_ms}: a generation slot of the account's `cap` (`P inflight:{account}`);
--           one the job holds already counts as taken
--   renew:  until_ms: the slot it holds lives on (a poll)
--   tslot:  {tenant, cap, until_ms}: one of its tenant's slots (`P tenant_inflight:{tenant}`)
--   trenew: {tenant, until_ms}
--   spend:  {{key, cap, days, limit}, ...}: `cost` reserved on each spend counter (kept
--           `days` days) without passing its `cap` (0: none); `limit` names it if it would
-- Args (home.rs): effects (a list).
-- Reply: {made = how many, refused = {{id, limit (as the claim's waits name it), wait_ms},
-- ...}}.
local now = now_ms()
local DAY_MS = 86400000
local refused = {}
local tats, used, spent = {}, {}, {}

local function tat_of(account)
  if tats[account] == nil then
    tats[account] = tonumber(redis.call('GET', home .. 'rate:' .. account) or '0')
  end
  return tats[account]
end

-- Slots held in a zset of expiries, the expired ones dropped once per settle.
local function used_of(key)
  if used[key] == nil then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    used[key] = redis.call('ZCARD', key)
  end
  return used[key]
end

local function spent_of(key)
  if spent[key] == nil then spent[key] = tonumber(redis.call('GET', key) or '0') end
  return spent[key]
end

-- Whether a slot of `key` (capped at `cap`) can be had by `id`, and whether it is new.
local function slot_free(key, id, cap)
  if redis.call('ZSCORE', key, id) then return true, false end
  return used_of(key) < cap, true
end

-- Why `e` cannot be taken now (which limit, and for how long), or nil.
local function refusal(e)
  if e.rate then
    local wait = gcra_wait(tat_of(e.account), now, e.rate.rate, e.rate.burst)
    if wait > 0 then return 'rate', wait end
  end
  if e.slot then
    local ok = slot_free(home .. 'inflight:' .. e.account, e.id, e.slot.cap)
    if not ok then return 'in_flight', 1000 end
  end
  if e.tslot then
    local ok = slot_free(home .. 'tenant_inflight:' .. e.tslot.tenant, e.id, e.tslot.cap)
    if not ok then return 'tenant_in_flight', 1000 end
  end
  for _, s in ipairs(e.spend or {}) do
    if s.cap > 0 and spent_of(s.key) + e.cost > s.cap then
      return s.limit, DAY_MS * (math.floor(now / DAY_MS) + 1) - now
    end
  end
  return nil
end

local function take(e)
  local limit, wait_ms = refusal(e)
  if limit then
    refused[#refused + 1] = { id = e.id, limit = limit, wait_ms = wait_ms }
    return
  end
  if e.rate then
    tats[e.account] = math.max(tat_of(e.account), now) + 1000 / e.rate.rate
    redis.call('SET', home .. 'rate:' .. e.account, tats[e.account], 'PX',
      math.ceil(tats[e.account] - now) + 1000)
  end
  local slot_key = home .. 'inflight:' .. e.account
  if e.slot then
    local _, new = slot_free(slot_key, e.id, e.slot.cap)
    redis.call('ZADD', slot_key, e.slot.until_ms, e.id)
    if new then used[slot_key] = used[slot_key] + 1 end
  elseif e.renew then
    redis.call('ZADD', slot_key, 'XX', e.renew, e.id)
  end
  if e.tslot then
    local key = home .. 'tenant_inflight:' .. e.tslot.tenant
    local _, new = slot_free(key, e.id, e.tslot.cap)
    redis.call('ZADD', key, e.tslot.until_ms, e.id)
    if new then used[key] = used[key] + 1 end
  elseif e.trenew then
    redis.call('ZADD', home .. 'tenant_inflight:' .. e.trenew.tenant, 'XX', e.trenew.until_ms, e.id)
  end
  for _, s in ipairs(e.spend or {}) do
    spent[s.key] = spent_of(s.key) + e.cost
    redis.call('INCRBY', s.key, e.cost)
    redis.call('PEXPIRE', s.key, s.days * DAY_MS)
  end
end

for _, e in ipairs(A.effects) do
  if e.op == 'take' then take(e) else apply_home(e) end
end
return cjson.encode({ made = #A.effects, refused = refused })
