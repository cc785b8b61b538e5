-- What a claim needs to know of the home, read just before it where the home has a slot of its
-- own (claim.lua decides from it; home.lua checks each job's take against the home again).
-- Args (claim_view.rs): accounts ({{name, rate, slots, daily}, ...}: the worker's accounts,
-- and those it has limits for, each with which of its limits the claim applies: its pause is
-- read for every one).
-- Reply: {now_ms, accounts = {[account] = {pause_ms (left of its pause; <= 0: none), tat (its
-- request bucket's), used (its generation slots taken), spent (its reservations today)}},
-- tenants = {[tenant] = {used, day, month}} (each tenant with a cap: its slots taken, its
-- spend reserved today and this month)}.
-- Pauses, request buckets and spend are read in one MGET; slots one ZCOUNT per capped account.
local now = now_ms()
local day = math.floor(now / 86400000)
local live = '(' .. now
local accounts, tenants = {}, {}
local keys, reads = {}, {}
local function read(key, account, field)
  keys[#keys + 1] = key
  reads[#reads + 1] = { account = account, field = field }
end
for _, a in ipairs(A.accounts) do
  local seen = { pause_ms = -2, tat = 0, used = 0, spent = 0 }
  accounts[a.name] = seen
  read(home .. 'pause:' .. a.name, a.name, 'pause_ms')
  if a.rate then read(home .. 'rate:' .. a.name, a.name, 'tat') end
  if a.daily then read(home .. 'spend:' .. a.name .. ':' .. day, a.name, 'spent') end
  if a.slots then seen.used = redis.call('ZCOUNT', home .. 'inflight:' .. a.name, live, '+inf') end
end
if #keys > 0 then
  local values = redis.call('MGET', unpack(keys))
  for i, r in ipairs(reads) do
    local value = tonumber(values[i] or '')
    if r.field == 'pause_ms' and values[i] then
      -- A pause holds the ms it ends at (one set before it did holds '1': ask its TTL).
      if value and value > 1 then
        value = value - now
      else
        value = redis.call('PTTL', keys[i])
      end
    end
    if value then accounts[r.account][r.field] = value end
  end
end
local caps = redis.call('HGETALL', home .. 'tenant_limits')
for i = 1, #caps, 2 do
  local tenant, cap = caps[i], cjson.decode(caps[i + 1])
  local seen = {}
  if type(cap.max_in_flight) == 'number' and cap.max_in_flight > 0 then
    seen.used = redis.call('ZCOUNT', home .. 'tenant_inflight:' .. tenant, live, '+inf')
  end
  if type(cap.daily_micros) == 'number' or type(cap.monthly_micros) == 'number' then
    local spent = redis.call('MGET', tenant_spend_keys(tenant, day))
    seen.day, seen.month = tonumber(spent[1] or '0'), tonumber(spent[2] or '0')
  end
  tenants[tenant] = seen
end
return cjson.encode({ now_ms = now, accounts = accounts, tenants = tenants })
