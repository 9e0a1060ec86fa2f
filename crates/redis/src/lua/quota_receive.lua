#!lua
-- A shard applies a transfer from the pool, once: the transfer's id is remembered, so the
-- mover and the sweeper may both apply it.
--
-- KEYS[1]  the shard's quota (hash: resource -> units)
-- KEYS[2]  transfers applied (set of ids)
-- ARGV[1]  transfer id   ARGV[2] resource   ARGV[3] units
-- Reply    1 if applied now, 0 if it was already
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[2], ARGV[3])
return 1
