-- GET /v1/coupons/{coupon}/gifts for many distinct users, round-robin from the first user or from
-- the index given as the second argument (warm-ups go on where the last run stopped).
package.path = package.path .. ";bench/wrk/?.lua"
local tokens = require("tokens")
local users, i

function init(args)
  users = tokens.load(args[1])
  i = (tonumber(args[2]) or 0) % #users
end

function request()
  i = i % #users + 1
  local u = users[i]
  return wrk.format("GET", "/v1/coupons/" .. u.coupon .. "/gifts", {
    ["Authorization"] = "Bearer " .. u.ticket,
  })
end
