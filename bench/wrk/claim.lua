-- POST /v1/claims, each line of the file (from `hongbao bench claims`) used once: a distinct user
-- and coupon per request. When the lines run out the script wraps around, and repeats answer 200
-- (replays): size the file for the run (requests/s × seconds). An optional second argument is a
-- think time in milliseconds between a connection's answer and its next request, to hold the
-- load at a chosen share of the maximum (latency is then still measured from the actual send, so
-- a server stall shows less than in an open-loop run). CLAIM_PATH in the environment sends the
-- same requests elsewhere (the floor's claim-shaped route, /floor/claim).
local lines, i
local path = os.getenv("CLAIM_PATH") or "/v1/claims"

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
  local think = tonumber(args[2])
  if think then
    -- wrk looks for `delay` after `init`.
    function delay()
      return think
    end
  end
end

function request()
  i = i % #lines + 1
  local l = lines[i]
  return wrk.format("POST", path, {
    ["Authorization"] = l.auth,
    ["Content-Type"] = "application/json",
  }, l.body)
end
