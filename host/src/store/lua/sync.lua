-- One replica's round trip per interval: writes the last uses of its
-- tickets (the later use wins; freed tickets are not brought back) and
-- reads the version, plus every ticket when the version is not the one
-- the replica knows.
-- KEYS: 1 tickets, 2 last uses, 3 version
-- ARGV: 1 known version (or ''), then pairs: pod/uid, unix ms
-- Returns {version} or {version, tickets (HGETALL), last uses (HGETALL)}.
for i = 2, #ARGV, 2 do
  local field, ms = ARGV[i], tonumber(ARGV[i + 1])
  if redis.call('HEXISTS', KEYS[1], field) == 1 then
    local cur = tonumber(redis.call('HGET', KEYS[2], field) or '0')
    if ms > cur then
      redis.call('HSET', KEYS[2], field, ARGV[i + 1])
    end
  end
end
local v = tonumber(redis.call('GET', KEYS[3]) or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) == v then
  return {v}
end
return {v, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
