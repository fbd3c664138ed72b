-- Charges the tokens and compute time of a request that ended to n subjects.
-- KEYS, per subject i: [2i-1] token bucket, [2i] this month's usage.
-- ARGV[1] tokens, ARGV[2] compute ms; then per subject: tokens/minute (0: none), has a quota (0 or 1).
-- A usage counter that is gone (Redis lost it, or the month turned) is left for the next admission to seed.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tokens, compute_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, #KEYS / 2 do
  local tpm, quota = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local bucket, usage = KEYS[2 * i - 1], KEYS[2 * i]
  if tpm > 0 and tokens > 0 then
    local state = redis.call('HMGET', bucket, 'level', 'at')
    local level, at = tonumber(state[1]), tonumber(state[2])
    if level == nil or at == nil then
      level = tpm
    else
      level = math.min(tpm, level + math.max(0, now - at) * tpm / 60)
    end
    redis.call('HSET', bucket, 'level', tostring(level - tokens), 'at', tostring(now))
    -- Kept until it would have refilled to full (its debt is kept), plus a minute; at most a day.
    redis.call('PEXPIRE', bucket, math.floor(math.min(86400, (tpm - (level - tokens)) / (tpm / 60) + 60) * 1000))
  end
  if quota == 1 and redis.call('EXISTS', usage) == 1 then
    redis.call('HINCRBY', usage, 'tokens', tokens)
    redis.call('HINCRBY', usage, 'compute_ms', compute_ms)
  end
end
return 'ok'
