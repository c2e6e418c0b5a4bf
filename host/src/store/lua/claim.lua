-- Claims a slot on a pod for a new ticket, atomically: the decision a
-- replica made on its own snapshot is checked against every replica's
-- tickets here, so no pod is ever filled past its capacity.
-- KEYS: 1 tickets (field pod/uid -> token digest), 2 counts (pod -> n),
--       3 last uses (pod/uid -> unix ms), 4 version
-- ARGV: 1 pod, 2 pod/uid, 3 digest (hex), 4 capacity, 5 now (unix ms)
-- Returns {1, held} when claimed, {0, held} when the pod is full,
-- {-1, held} when the uid is taken on that pod.
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if held >= tonumber(ARGV[4]) then
  return {0, held}
end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 0 then
  return {-1, held}
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('INCR', KEYS[4])
return {1, held + 1}
