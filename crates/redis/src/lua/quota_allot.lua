#!lua
-- The pool gives a shard some of a resource (a gift's stock, an hour's high-value budget): at
-- most what it has not given out, recorded as a pending transfer until the shard has applied it
-- (`quota_receive.lua`), so a mover that dies in between leaves a record the sweeper finishes.
--
-- KEYS[1]  allotted (hash: resource -> units given to shards and not given back)
-- KEYS[2]  transfers (hash: transfer id -> '<shard>|<resource>|<units>|<ms>')
-- KEYS[3]  the pool's id counter (string)
-- ARGV[1]  resource   ARGV[2] the resource's total (at most 2^53)
-- ARGV[3]  the least units worth giving (a high-value claim needs its gift's value at once)
-- ARGV[4]  the share: give ceil(available / ARGV[4]) units, at least ARGV[3], at most ARGV[5]
-- ARGV[5]  the most units one transfer gives   ARGV[6] the shard   ARGV[7] now, ms
-- Reply    {units given, transfer id}; {0, ''} when the pool is empty (what is left, if less
--          than ARGV[3]: with what the shard holds, it may be enough)
local allotted = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local available = tonumber(ARGV[2]) - allotted
local least = tonumber(ARGV[3])
if available <= 0 then
  return {0, ''}
end
local units = math.ceil(available / tonumber(ARGV[4]))
units = math.min(math.max(units, least), tonumber(ARGV[5]), available)
redis.call('HINCRBY', KEYS[1], ARGV[1], string.format('%d', units))
local id = 't' .. redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], id,
  ARGV[6] .. '|' .. ARGV[1] .. '|' .. string.format('%d', units) .. '|' .. ARGV[7])
return {units, id}
