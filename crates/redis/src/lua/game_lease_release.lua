-- Gives one game's delivery lease up if ARGV[1] holds it (hongbao_queue::GameLeases::release).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
