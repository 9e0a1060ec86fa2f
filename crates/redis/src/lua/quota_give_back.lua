#!lua
-- The pool takes back a shard's release, once (the release's id is remembered, so the mover
-- and the sweeper may both apply it).
--
-- KEYS[1]  allotted (hash: resource -> units)   KEYS[2] releases taken back (set of ids)
-- ARGV[1]  release id   ARGV[2] resource   ARGV[3] units
-- Reply    1 if taken back now, 0 if it was already
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[2], string.format('%d', -tonumber(ARGV[3])))
return 1
