"""The Redis scripts: the decision of :mod:`aimp_core.ratelimit.algorithm`, run atomically.

Redis runs a script to completion before any other command, so one
``EVALSHA`` of :data:`CHECK` reads every limit's state, decides, and writes
all of them (or none) with no other gateway in between: exact under any
concurrency, in one round trip. :data:`CHECK_MANY` runs the same decision for
several calls one after another in one script call (the limiter's micro-batch).
The clock is Redis's ``TIME``, shared by every caller. Every key a script
touches is passed in ``KEYS``.

Numbers are Lua doubles: every value here stays below 2**53 (see
:data:`aimp_core.ratelimit.limits.MIN_RATE_PER_S`), so they are exact, and
``fdiv`` corrects floor division for rounding.
"""

from __future__ import annotations

#: Helpers shared by the scripts: floor division and the UTC calendar (see calendar.py).
_PRELUDE = """
local function fdiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local DAY = 86400000000
local function clock(override)
  local now = tonumber(override)
  if now == nil or now <= 0 then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return now
end
local function civil(days)
  local z = days + 719468
  local era = fdiv(z, 146097)
  local doe = z - era * 146097
  local yoe = fdiv(doe - fdiv(doe, 1460) + fdiv(doe, 36524) - fdiv(doe, 146096), 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + fdiv(yoe, 4) - fdiv(yoe, 100))
  local mp = fdiv(5 * doy + 2, 153)
  local m
  if mp < 10 then m = mp + 3 else m = mp - 9 end
  if m <= 2 then y = y + 1 end
  return y, m
end
local function first_day(y, m)
  if m <= 2 then y = y - 1 end
  local era = fdiv(y, 400)
  local yoe = y - era * 400
  local mp
  if m > 2 then mp = m - 3 else mp = m + 9 end
  local doe = yoe * 365 + fdiv(yoe, 4) - fdiv(yoe, 100) + fdiv(153 * mp + 2, 5)
  return era * 146097 + doe - 719468
end
local function periods(now)
  local day = fdiv(now, DAY)
  local y, m = civil(day)
  local ny, nm = y, m + 1
  if nm > 12 then ny, nm = y + 1, 1 end
  return day, y * 12 + m - 1, (day + 1) * DAY, first_day(ny, nm) * DAY
end
local function left(cap, used)
  if cap <= 0 then return -1 end
  if used > cap then return 0 end
  return cap - used
end
"""

#: The decision of one call over K (its keys) and A (its arguments), as CHECK lays them out.
_CHECK_FUNCTION = (
    "local function check(K, A)\n"
    + """local now = clock(A[1])
local lease_id = A[2]
local lease_ttl = tonumber(A[3])
local n = tonumber(A[4])
local day, month, day_end, month_end = periods(now)
local ev = {}
local failed, fkind, fretry = 0, 0, 0
local k = 1
for i = 1, n do
  local a = 4 + (i - 1) * 8
  local e = {
    interval = tonumber(A[a + 1]), burst = tonumber(A[a + 2]),
    warmup = tonumber(A[a + 3]), cold = tonumber(A[a + 4]),
    epoch = tonumber(A[a + 5]), qd = tonumber(A[a + 6]),
    qm = tonumber(A[a + 7]), conc = tonumber(A[a + 8]),
    skey = K[k], fits = true, kind = 0, retry = 0,
    rrem = -1, rwait = 0, inflight = 0
  }
  k = k + 1
  if e.conc > 0 then e.lkey = K[k]; k = k + 1 end
  local st = redis.call('HMGET', e.skey, 'tat', 'ws', 'la', 'dp', 'dc', 'mp', 'mc')
  local function fail(kind, retry)
    e.fits = false
    if e.kind == 0 or retry > e.retry then e.kind, e.retry = kind, retry end
  end
  if e.interval > 0 then
    local cost = e.interval
    if e.warmup > 0 then
      local ws, la = tonumber(st[2]), tonumber(st[3])
      if ws == nil or la == nil or now - la >= e.warmup then ws = now end
      if e.epoch > ws and e.epoch <= now then ws = e.epoch end
      e.ws = ws
      local elapsed = now - ws
      if elapsed < e.warmup then
        cost = e.interval + math.ceil(e.interval * ((e.cold - 1000) / 1000)
          * ((e.warmup - elapsed) / e.warmup))
      end
    end
    local tat = tonumber(st[1])
    local base = now
    if tat ~= nil and tat >= now then base = tat end
    local cap = e.burst * e.interval
    local horizon = cap
    if e.warmup > 0 then
      local first = e.interval + math.ceil(e.interval * ((e.cold - 1000) / 1000)
        * ((e.warmup - 0) / e.warmup))
      if first > horizon then horizon = first end
    end
    if base > now + horizon then
      base = now + horizon
      e.clamped = base
    end
    local ahead = base - now
    local room = math.max(cap - cost, 0)
    e.rrem = math.max(0, fdiv(cap - ahead, e.interval))
    e.rwait = math.max(0, ahead - room)
    if ahead > room then fail(1, ahead - room) else e.new_tat = base + cost end
  end
  e.dc = 0
  if tonumber(st[4]) == day then e.dc = tonumber(st[5]) or 0 end
  if e.qd > 0 and e.dc + 1 > e.qd then fail(2, day_end - now) end
  e.mc = 0
  if tonumber(st[6]) == month then e.mc = tonumber(st[7]) or 0 end
  if e.qm > 0 and e.mc + 1 > e.qm then fail(3, month_end - now) end
  if e.conc > 0 then
    redis.call('ZREMRANGEBYSCORE', e.lkey, '-inf', now)
    e.inflight = redis.call('ZCARD', e.lkey)
    if e.inflight + 1 > e.conc then fail(4, 1000000) end
  end
  if not e.fits and (failed == 0 or e.retry > fretry) then
    failed, fkind, fretry = i, e.kind, e.retry
  end
  ev[i] = e
end
local allowed = 1
local used = 0
if failed > 0 then allowed = 0 else used = 1 end
local out = {allowed, failed, fkind, fretry, now}
for i = 1, n do
  local e = ev[i]
  if allowed == 1 then
    local keep = month_end - now
    if e.interval > 0 then
      local ahead = e.new_tat - now
      local cap = e.burst * e.interval
      e.rrem = fdiv(cap - ahead, e.interval)
      e.rwait = math.max(0, ahead + e.interval - cap)
      if ahead > keep then keep = ahead end
      redis.call('HSET', e.skey, 'tat', string.format('%d', e.new_tat))
      if e.warmup > 0 then
        redis.call('HSET', e.skey, 'ws', string.format('%d', e.ws),
          'la', string.format('%d', now))
        if e.warmup > keep then keep = e.warmup end
      end
    end
    redis.call('HSET', e.skey, 'dp', day, 'dc', e.dc + 1, 'mp', month, 'mc', e.mc + 1)
    redis.call('PEXPIRE', e.skey, fdiv(keep + 999, 1000) + 1000)
    if e.conc > 0 then
      redis.call('ZADD', e.lkey, string.format('%d', now + lease_ttl), lease_id)
      local want = fdiv(lease_ttl + 999, 1000) + 1000
      if redis.call('PTTL', e.lkey) < want then redis.call('PEXPIRE', e.lkey, want) end
    end
  end
  if allowed == 0 and e.clamped ~= nil then
    redis.call('HSET', e.skey, 'tat', string.format('%d', e.clamped))
  end
  table.insert(out, e.rrem)
  table.insert(out, e.rwait)
  table.insert(out, left(e.qd, e.dc + used))
  table.insert(out, left(e.qm, e.mc + used))
  table.insert(out, left(e.conc, e.inflight + used))
end
return out
end
"""
)

#: KEYS: per limit its state hash, then its lease set when it caps concurrency.
#: ARGV: now_us (0: Redis TIME; tests pass a clock), lease id, lease ttl_us, the
#: number of limits, then 8 numbers per limit (LimitSpec.argv()).
#: Returns {allowed, failed (1-based, 0: none), kind, retry_after_us, now_us} and,
#: per limit, {rate_remaining, rate_wait_us, day_remaining, month_remaining,
#: concurrency_remaining} (-1: no such limit), as Decision.as_reply().
CHECK = _PRELUDE + _CHECK_FUNCTION + "return check(KEYS, ARGV)\n"

#: Several calls' checks in one script call, decided one after another exactly as if each
#: were its own CHECK (nothing runs between them): ARGV[1] = the number of checks m, then
#: per check its key count and argument count, then every check's CHECK arguments in
#: order; KEYS: every check's CHECK keys in order. Returns one CHECK reply per check.
CHECK_MANY = (
    _PRELUDE
    + _CHECK_FUNCTION
    + """
local m = tonumber(ARGV[1])
local out = {}
local kpos, apos = 0, 1 + 2 * m
for j = 1, m do
  local nk, na = tonumber(ARGV[2 * j]), tonumber(ARGV[2 * j + 1])
  local K, A = {}, {}
  for i = 1, nk do K[i] = KEYS[kpos + i] end
  for i = 1, na do A[i] = ARGV[apos + i] end
  kpos, apos = kpos + nk, apos + na
  out[j] = check(K, A)
end
return out
"""
)

#: KEYS: lease sets; ARGV[1] = ttl_us, ARGV[1 + i] = the lease id held in KEYS[i].
#: Pushes each still-held lease's expiry to now + ttl; returns how many were held.
RENEW = (
    _PRELUDE
    + """
local now = clock(0)
local ttl = tonumber(ARGV[1])
local expiry = string.format('%d', now + ttl)
local want = fdiv(ttl + 999, 1000) + 1000
local held = 0
for i = 1, #KEYS do
  held = held + redis.call('ZADD', KEYS[i], 'XX', 'CH', expiry, ARGV[i + 1])
  if redis.call('PTTL', KEYS[i]) < want then redis.call('PEXPIRE', KEYS[i], want) end
end
return held
"""
)

#: KEYS[1] = the members set; ARGV[1] = this member, ARGV[2] = ttl_ms, ARGV[3] = "1" to
#: record this member's heartbeat (else only count). Forgets members silent for longer
#: than ttl and returns how many are live.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
  redis.call('PEXPIRE', KEYS[1], ttl * 10)
end
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now - ttl), '+inf')
"""

#: Read-only: the same KEYS and ARGV as CHECK (lease id and ttl unused). Returns
#: {now_us} and per limit {rate_remaining, day_used, month_used, in_flight}
#: (-1 where the limit has no rate or no concurrency cap).
USAGE = (
    _PRELUDE
    + """
local now = clock(ARGV[1])
local n = tonumber(ARGV[4])
local day, month = periods(now)
local out = {now}
local k = 1
for i = 1, n do
  local a = 4 + (i - 1) * 8
  local interval, burst = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local conc = tonumber(ARGV[a + 8])
  local skey = KEYS[k]
  k = k + 1
  local st = redis.call('HMGET', skey, 'tat', 'dp', 'dc', 'mp', 'mc')
  local rrem = -1
  if interval > 0 then
    local tat = tonumber(st[1])
    local ahead = 0
    if tat ~= nil and tat > now then ahead = tat - now end
    rrem = math.max(0, fdiv(burst * interval - ahead, interval))
  end
  local dc, mc = 0, 0
  if tonumber(st[2]) == day then dc = tonumber(st[3]) or 0 end
  if tonumber(st[4]) == month then mc = tonumber(st[5]) or 0 end
  local inflight = -1
  if conc > 0 then
    inflight = redis.call('ZCOUNT', KEYS[k], '(' .. string.format('%d', now), '+inf')
    k = k + 1
  end
  table.insert(out, rrem)
  table.insert(out, dc)
  table.insert(out, mc)
  table.insert(out, inflight)
end
return out
"""
)
