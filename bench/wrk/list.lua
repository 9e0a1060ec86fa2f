-- GET /v1/coupons/{coupon}/gifts for many distinct users.
package.path = package.path .. ";bench/wrk/?.lua"
local tokens = require("tokens")
local users, i

function init(args)
  users = tokens.load(args[1])
  i = 0
end

function request()
  i = i % #users + 1
  local u = users[i]
  return wrk.format("GET", "/v1/coupons/" .. u.coupon .. "/gifts", {
    ["Authorization"] = "Bearer " .. u.ticket,
  })
end
