-- One replica's round trip per interval: writes the last uses of its
-- tickets (the later use wins; freed tickets are not brought back) and its
-- connected waiting users, and reads the version, where those users stand
-- in the queue shared by every replica, plus every ticket when the version
-- is not the one the replica knows.
-- KEYS: 1 tickets, 2 last uses, 3 version, 4 replicas (zset: id -> last
--       heard, unix ms), 5 queue key prefix (<prefix>:<replica id> is a
--       zset: waiter id -> when they asked, unix ms)
-- ARGV: 1 known version (or ''), 2 replica id, 3 now (unix ms),
--       4 staleness (ms), 5 n waiters, then n pairs: waiter id, asked at,
--       then pairs: pod/uid, unix ms
-- Returns {version, ahead (one count per waiter), others waiting} and,
-- when the version changed, tickets (HGETALL) and last uses (HGETALL).
local me, now, stale = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local mine = KEYS[5] .. ':' .. me
redis.call('DEL', mine)
local scores = {}
for i = 1, n do
  local id, at = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  redis.call('ZADD', mine, at, id)
  scores[i] = at
end
if n > 0 then
  -- A replica that dies leaves no waiters behind for long.
  redis.call('PEXPIRE', mine, stale)
end
redis.call('ZADD', KEYS[4], now, me)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - stale)
local ahead, others = {}, 0
for i = 1, n do
  ahead[i] = 0
end
for _, r in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  if r ~= me then
    local q = KEYS[5] .. ':' .. r
    others = others + redis.call('ZCARD', q)
    for i = 1, n do
      ahead[i] = ahead[i] + redis.call('ZCOUNT', q, '-inf', '(' .. scores[i])
    end
  end
end
for i = 6 + 2 * n, #ARGV, 2 do
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
  return {v, ahead, others}
end
return {v, ahead, others, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
