#!lua
-- One delivery outcome recorded: the order's next state (decided in Rust by the domain's state
-- machine) written only over the state the worker leased it in, and a delivered order's row in
-- the actual-send log. Idempotent: the same outcome again answers 'same' and writes nothing, so
-- a worker that recorded and then died before acknowledging the message cannot double a row.
--
-- KEYS[1]  orders (hash: order id -> Order JSON)
-- KEYS[2]  actual-send log (zset: order id scored by delivered_at_ms)
-- ARGV[1]  order id   ARGV[2] the order JSON as leased   ARGV[3] the next order JSON
-- ARGV[4]  delivered_at_ms for a delivered order, else ''
-- Reply    'ok' (written), 'same' (already written), 'stale' (the order changed since the
--          lease: another holder settled it), 'missing' (no such order).
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then
  return 'missing'
end
if current == ARGV[3] then
  return 'same'
end
if current ~= ARGV[2] then
  return 'stale'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[1])
end
return 'ok'
