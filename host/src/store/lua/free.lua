-- Frees tickets: all of those named, or (with a cutoff) only those whose
-- last use on any replica is older than the cutoff (expiry).
-- KEYS: 1 tickets, 2 counts, 3 last uses, 4 version
-- ARGV: 1 cutoff (unix ms, or '' for none), then pairs: pod, pod/uid
-- Returns how many tickets were freed.
local cutoff = tonumber(ARGV[1])
local freed = 0
for i = 2, #ARGV, 2 do
  local pod, field = ARGV[i], ARGV[i + 1]
  local idle = true
  if cutoff then
    local last = tonumber(redis.call('HGET', KEYS[3], field) or '0')
    idle = last < cutoff
  end
  if idle and redis.call('HDEL', KEYS[1], field) == 1 then
    redis.call('HDEL', KEYS[3], field)
    if redis.call('HINCRBY', KEYS[2], pod, -1) <= 0 then
      redis.call('HDEL', KEYS[2], pod)
    end
    freed = freed + 1
  end
end
if freed > 0 then
  redis.call('INCR', KEYS[4])
end
return freed
