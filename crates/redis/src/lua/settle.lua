#!lua
-- One delivery outcome recorded: the order's next state (decided in Rust by the domain's state
-- machine) written only over the state the worker leased it in, and a delivered order's row in
-- the actual-send log. Idempotent: the same outcome again answers 'same' and writes nothing, so
-- a worker that recorded and then died before acknowledging the message cannot double a row.
--
-- KEYS[1]  orders (hash: order id -> Order JSON)
-- KEYS[2]  actual-send log (zset: order id scored by delivered_at_ms)
-- KEYS[3]  published (hash: order id -> stream sequence of its latest message)
-- ARGV[1]  order id   ARGV[2] the order JSON as leased   ARGV[3] the next order JSON
-- ARGV[4]  delivered_at_ms for a delivered order, else ''
-- ARGV[5]  '1' when the next state is final: the order's message is done with, and where the
--          stream held it is no longer asked (only waiting orders' messages are looked for), so
--          its `published` entry goes (a requeue records a new one)
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
if ARGV[5] == '1' then
  redis.call('HDEL', KEYS[3], ARGV[1])
end
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[1])
end
return 'ok'
