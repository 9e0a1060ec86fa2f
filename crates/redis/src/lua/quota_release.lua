#!lua
-- A shard gives back the quota of a resource it has not used (the pool is empty and another
-- shard needs it), recorded as a pending release until the pool has taken it back
-- (`quota_give_back.lua`).
--
-- KEYS[1]  the shard's quota (hash: resource -> units)
-- KEYS[2]  what the shard used of it: the units-taken hash (ARGV[2] its field) or, for ARGV[2]
--          '', a string (an hour's high-value cents)
-- KEYS[3]  releases (hash: release id -> '<resource>|<units>|<ms>')
-- KEYS[4]  the shard's id counter (string)
-- ARGV[1]  resource   ARGV[2] the used field, or ''   ARGV[3] the shard   ARGV[4] now, ms
-- Reply    {units released, release id}; {0, ''} when none is spare
local quota = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local used
if ARGV[2] == '' then
  used = tonumber(redis.call('GET', KEYS[2]) or '0')
else
  used = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
end
local spare = quota - used
if spare <= 0 then
  return {0, ''}
end
redis.call('HINCRBY', KEYS[1], ARGV[1], string.format('%d', -spare))
local id = 's' .. ARGV[3] .. '-' .. redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[3], id, ARGV[1] .. '|' .. string.format('%d', spare) .. '|' .. ARGV[4])
return {spare, id}
