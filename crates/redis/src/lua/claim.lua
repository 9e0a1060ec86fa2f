#!lua
-- One claim, decided and recorded atomically: `ledger::claim`'s rules (crates/store/src/ledger/
-- claim.rs) in the order `hongbao_store::claim` documents. Rejections write nothing; the
-- `#!lua` line makes Redis refuse the whole script when out of memory rather than stop it
-- between two writes.
--
-- KEYS[1]  orders (hash: order id -> Order JSON)
-- KEYS[2]  units taken (hash: gift id -> count)
-- KEYS[3]  the user's units per gift (hash: gift id -> count)
-- KEYS[4]  the user's orders (zset: order id scored by created_at_ms)
-- KEYS[5]  should-send: recorded, not yet published (zset: order id scored by ready_at_ms)
-- KEYS[6]  the user's high-value claims in the claim's UTC day (string count, Redis TTL)
-- KEYS[7]  high-value cents accepted in the claim's UTC hour (string count, Redis TTL)
-- KEYS[8]  every order id of the campaign (zset, all scores 0: in id order, for reconciliation)
-- KEYS[9]  the shard's quota (hash: resource -> units; read only when ARGV[3] is '')
-- KEYS[10] the idempotency record of (user, key); absent for a claim without a key
-- ARGV[1]  order id (derived from campaign, user, coupon)   ARGV[2] gift id
-- ARGV[3]  stock (at most 2^53), or '' for a claim shard: its quota of the gift (KEYS[9])
-- ARGV[4]  per-user limit of the gift
-- ARGV[5]  now, ms, 20 digits   ARGV[6] request fingerprint, 64 hex digits
-- ARGV[7]  the record's expiry, ms, 20 digits   ARGV[8] the record's Redis TTL, ms
-- ARGV[9]  the order an acceptance writes (JSON)   ARGV[10] its created_at_ms   ARGV[11] ready_at_ms
-- ARGV[12] the gift's value in cents, '' for a gift that is not high value
-- ARGV[13] high-value claims per user per day   ARGV[14] high-value budget, cents per hour, or
--          '' for a claim shard: its quota of the hour (KEYS[9], field ARGV[17])
-- ARGV[15] Redis TTL of KEYS[6], ms   ARGV[16] Redis TTL of KEYS[7], ms
-- ARGV[17] the hour's quota field, `hv:<hour>`
-- Reply    {outcome, order JSON, units of the gift taken or -1}: outcome 'A' (accepted),
--          'R' (replayed), 'C' (coupon already redeemed) with the order as stored now, or ''
--          for the order ARGV[9] just written; or 'conflict', 'out_of_stock', 'limit', or
--          'hv_day', 'hv_budget', or 'corrupt' with a message.
--
-- An idempotency record is one string, WARNING: persisted, changing it breaks stored records:
-- expiry (20 digits) .. fingerprint (64 hex) .. kind ('A', 'R' or 'C') .. order id (32 hex).
-- Times are compared as 20-digit strings: exact for any u64, where Lua's numbers are doubles.
local order_id, gift_id = ARGV[1], ARGV[2]
local keyed = #KEYS == 10

-- 1. Idempotency key: an unexpired record answers, a conflict or its kind with the order now.
if keyed then
  local record = redis.call('GET', KEYS[10])
  if record and string.sub(record, 1, 20) > ARGV[5] then
    if string.sub(record, 21, 84) ~= ARGV[6] then
      return {'conflict', '', -1}
    end
    local recorded_id = string.sub(record, 86)
    local recorded = redis.call('HGET', KEYS[1], recorded_id)
    if not recorded then
      return {'corrupt', 'idempotency key names missing order ' .. recorded_id, -1}
    end
    return {string.sub(record, 85, 85), recorded, -1}
  end
end

local outcome, order, taken
local existing = redis.call('HGET', KEYS[1], order_id)
if existing then
  -- 2. Coupon already redeemed: the same gift replays the order, another gift is refused.
  if cjson.decode(existing)['gift_id'] == gift_id then outcome = 'R' else outcome = 'C' end
  order, taken = existing, -1
else
  -- 3. Stock: the campaign's, or a claim shard's quota of it (the units taken are the shard's).
  local stock = ARGV[3]
  if stock == '' then stock = redis.call('HGET', KEYS[9], gift_id) or '0' end
  taken = tonumber(redis.call('HGET', KEYS[2], gift_id) or '0')
  if taken >= tonumber(stock) then
    return {'out_of_stock', '', taken}
  end
  -- 4. The user's limit of the gift.
  local claimed = tonumber(redis.call('HGET', KEYS[3], gift_id) or '0')
  if claimed >= tonumber(ARGV[4]) then
    return {'limit', '', taken}
  end
  -- 5. High value: the user's day, then the hour's budget (`HighValueRule::refusal`).
  local high_value = ARGV[12] ~= ''
  local hv_claimed, hv_spent
  if high_value then
    hv_claimed = tonumber(redis.call('GET', KEYS[6]) or '0')
    if hv_claimed >= tonumber(ARGV[13]) then
      return {'hv_day', '', taken}
    end
    hv_spent = tonumber(redis.call('GET', KEYS[7]) or '0')
    local budget = ARGV[14]
    if budget == '' then budget = redis.call('HGET', KEYS[9], ARGV[17]) or '0' end
    if hv_spent + tonumber(ARGV[12]) > tonumber(budget) then
      return {'hv_budget', '', taken}
    end
  end
  -- 6. Accepted: the order (the redemption record of its coupon), its index, the counters,
  -- should-send.
  taken = redis.call('HINCRBY', KEYS[2], gift_id, 1)
  redis.call('HINCRBY', KEYS[3], gift_id, 1)
  redis.call('HSET', KEYS[1], order_id, ARGV[9])
  redis.call('ZADD', KEYS[4], ARGV[10], order_id)
  redis.call('ZADD', KEYS[5], ARGV[11], order_id)
  redis.call('ZADD', KEYS[8], 0, order_id)
  if high_value then
    -- Integers written as digits ('%d'), never in a double's exponent form.
    redis.call('SET', KEYS[6], string.format('%d', hv_claimed + 1), 'PX', ARGV[15])
    redis.call('SET', KEYS[7], string.format('%d', hv_spent + tonumber(ARGV[12])), 'PX', ARGV[16])
  end
  outcome, order = 'A', ''
end
if keyed then
  redis.call('SET', KEYS[10], ARGV[7] .. ARGV[6] .. outcome .. order_id, 'PX', ARGV[8])
end
return {outcome, order, taken}
