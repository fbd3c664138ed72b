-- Admits one request against the limits of n subjects (a key, its tenant), atomically: every limit of every
-- subject is checked first; only if all have room is one request taken from each request bucket and counted
-- against each monthly usage counter. Time is the Redis server's, so replicas' clocks do not matter.
--
-- KEYS, per subject i: [3i-2] request bucket, [3i-1] token bucket, [3i] this month's usage.
-- ARGV[1]: how long a usage counter lives (ms); then 9 values per subject from ARGV[2 + 9(i-1)]:
--   requests/s, burst, tokens/minute (0: none), monthly requests, tokens, compute ms (-1: none),
--   seed requests, tokens, compute ms (-1: not given; the caller reads them from the database).
-- Returns {'ok'} | {'seed', i} | {'quota', i, field, used} | {'rate', i, wait_s} | {'tokens', i, wait_s}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local n = #KEYS / 3
local ttl = tonumber(ARGV[1])
local fields = {'requests', 'tokens', 'compute_ms'}

-- How long an idle bucket must live: until it would have refilled to full (a bucket in debt keeps its
-- debt), plus a minute; at most a day (a bucket gone after that is full anyway).
local function idle_ms(level, capacity, per_second)
  return math.floor(math.min(86400, math.max(0, capacity - level) / per_second + 60) * 1000)
end

local function refill(key, capacity, per_second)
  local state = redis.call('HMGET', key, 'level', 'at')
  local level, at = tonumber(state[1]), tonumber(state[2])
  if level == nil or at == nil then
    return capacity
  end
  return math.min(capacity, level + math.max(0, now - at) * per_second)
end

local levels = {}
for i = 1, n do
  local a = 2 + 9 * (i - 1)
  local rps, burst, tpm = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local quota = {tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])}
  if quota[1] >= 0 or quota[2] >= 0 or quota[3] >= 0 then
    local usage = KEYS[3 * i]
    if redis.call('EXISTS', usage) == 0 then
      if tonumber(ARGV[a + 6]) < 0 then
        return {'seed', i}
      end
      redis.call('HSET', usage, 'requests', ARGV[a + 6], 'tokens', ARGV[a + 7], 'compute_ms', ARGV[a + 8])
      redis.call('PEXPIRE', usage, ttl)
    end
    local used = redis.call('HMGET', usage, 'requests', 'tokens', 'compute_ms')
    for q = 1, 3 do
      local value = tonumber(used[q]) or 0
      if quota[q] >= 0 and value >= quota[q] then
        return {'quota', i, fields[q], tostring(value)}
      end
    end
  end
  if rps > 0 then
    local level = refill(KEYS[3 * i - 2], burst, rps)
    if level < 1 then
      return {'rate', i, tostring((1 - level) / rps)}
    end
    levels[3 * i - 2] = level
  end
  if tpm > 0 then
    local level = refill(KEYS[3 * i - 1], tpm, tpm / 60)
    if level <= 0 then
      return {'tokens', i, tostring((1 - level) / (tpm / 60))}
    end
    levels[3 * i - 1] = level
  end
end

for i = 1, n do
  local a = 2 + 9 * (i - 1)
  local rps, burst = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  if levels[3 * i - 2] then
    redis.call('HSET', KEYS[3 * i - 2], 'level', tostring(levels[3 * i - 2] - 1), 'at', tostring(now))
    redis.call('PEXPIRE', KEYS[3 * i - 2], idle_ms(levels[3 * i - 2] - 1, burst, rps))
  end
  if levels[3 * i - 1] then
    redis.call('HSET', KEYS[3 * i - 1], 'level', tostring(levels[3 * i - 1]), 'at', tostring(now))
    redis.call('PEXPIRE', KEYS[3 * i - 1], idle_ms(levels[3 * i - 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 2]) / 60))
  end
  if tonumber(ARGV[a + 3]) >= 0 or tonumber(ARGV[a + 4]) >= 0 or tonumber(ARGV[a + 5]) >= 0 then
    redis.call('HINCRBY', KEYS[3 * i], 'requests', 1)
  end
end
return {'ok'}
