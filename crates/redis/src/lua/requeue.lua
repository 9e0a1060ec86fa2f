#!lua
-- One order put back on its way to the game (reconciliation's requeue): the order's next state
-- (decided in Rust by the domain's state machine, or '' to keep it: a waiting order whose
-- message was lost) written only over the state it was read in, the order recorded as not yet
-- published (so the sweeper publishes it if the caller dies before its own publish), and the
-- next requeue generation, which names the new message (`<order id>:r<n>`, outside the
-- deduplication window of every earlier message of the order).
--
-- KEYS[1]  orders (hash: order id -> Order JSON)
-- KEYS[2]  should-send (zset: order id scored by ready_at_ms)
-- KEYS[3]  requeue generations (hash: order id -> count)
-- ARGV[1]  order id   ARGV[2] the order JSON as read   ARGV[3] the next order JSON, or ''
-- ARGV[4]  ready_at_ms of the order as written
-- Reply    {'ok', generation}, {'stale', 0} (the order changed since it was read), or
--          {'missing', 0} (no such order).
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then
  return {'missing', 0}
end
if current ~= ARGV[2] then
  return {'stale', 0}
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return {'ok', redis.call('HINCRBY', KEYS[3], ARGV[1], 1)}
