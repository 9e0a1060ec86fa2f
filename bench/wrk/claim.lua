-- POST /v1/claims, each line of the file (from `hongbao bench claims`) used once: a distinct user
-- and coupon per request. When the lines run out the script wraps around, and repeats answer 200
-- (replays): size the file for the run (requests/s × seconds).
local lines, i

function init(args)
  lines = {}
  for line in io.lines(args[1]) do
    local ticket, body = line:match("^(%S+)\t(.+)$")
    if ticket then
      lines[#lines + 1] = { auth = "Bearer " .. ticket, body = body }
    end
  end
  assert(#lines > 0, "no claims in " .. args[1])
  i = 0
end

function request()
  i = i % #lines + 1
  local l = lines[i]
  return wrk.format("POST", "/v1/claims", {
    ["Authorization"] = l.auth,
    ["Content-Type"] = "application/json",
  }, l.body)
end
