-- Shared by the wrk scripts: loads `user ticket coupon` lines (from `hongbao bench tokens`) and
-- hands them out round-robin, each wrk thread from its own offset.
local M = {}

function M.load(path)
  local users = {}
  for line in io.lines(path) do
    local user, ticket, coupon = line:match("^(%S+) (%S+) (%S+)$")
    if user then
      users[#users + 1] = { ticket = ticket, coupon = coupon }
    end
  end
  assert(#users > 0, "no tokens in " .. path)
  return users
end

return M
