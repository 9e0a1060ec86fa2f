#!lua
-- One grab, decided and recorded atomically: `ledger::grant`'s rules (crates/store/src/ledger/
-- grant.rs). The budget is checked first, then the user's limit on the channel; the serial is
-- the user's count plus one. A rejection writes nothing.
--
-- KEYS[1]  the channel's coupons granted (string counter)
-- KEYS[2]  the users' coupons on the channel (hash: user -> count)
-- ARGV[1]  user   ARGV[2] per-user limit   ARGV[3] budget (at most 2^53, see `lua_limit`)
-- Reply    {outcome, granted on the channel, serial}; outcome 'granted', 'budget' or 'limit'.
local granted = tonumber(redis.call('GET', KEYS[1]) or '0')
if granted >= tonumber(ARGV[3]) then
  return {'budget', granted, 0}
end
local count = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if count >= tonumber(ARGV[2]) then
  return {'limit', granted, 0}
end
local serial = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
granted = redis.call('INCR', KEYS[1])
return {'granted', granted, serial}
