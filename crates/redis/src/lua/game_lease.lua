-- Takes or renews one game's delivery lease (hongbao_queue::GameLeases::hold).
-- KEYS[1]: the game's lease key. ARGV[1]: the holder. ARGV[2]: TTL in milliseconds.
-- Returns 2 when the holder held it already (renewed), 1 when nobody held it (acquired),
-- 0 when somebody else holds it.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 2
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
