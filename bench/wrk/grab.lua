-- POST /v1/coupons as many distinct users (one grab each per pass, swipe then ar_map then scan),
-- so the durable grant path is measured rather than the per-user limit.
package.path = package.path .. ";bench/wrk/?.lua"
local tokens = require("tokens")
local users, i, pass
local channels = { "swipe", "ar_map", "scan" }

function init(args)
  users = tokens.load(args[1])
  i = 0
  pass = 0
end

function request()
  i = i + 1
  if i > #users then
    i = 1
    pass = pass + 1
  end
  local body = '{"channel":"' .. channels[(pass % 3) + 1] .. '"}'
  return wrk.format("POST", "/v1/coupons", {
    ["Authorization"] = "Bearer " .. users[i].ticket,
    ["Content-Type"] = "application/json",
  }, body)
end
