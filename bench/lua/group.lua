-- PATCH /Groups/<id>: alternately add a random user and remove it again by value list
-- (Entra's shape; removes only the listed member).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local groups, users, pending
c.install(function()
  c.headers(true)
  groups, users, pending = c.lines("group_ids.txt"), c.lines("user_ids.txt"), {}
end)
request = function()
  local op, g, u
  if #pending > 0 and math.random(1, 2) == 1 then
    local last = table.remove(pending)
    g, u, op = last[1], last[2], "Remove"
  else
    g, u, op = c.pick(groups), c.pick(users), "Add"
    pending[#pending + 1] = { g, u }
  end
  local body = string.format([[{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"%s","path":"members","value":[{"value":"%s"}]}]}]], op, u)
  return wrk.format("PATCH", c.base .. "/Groups/" .. g, nil, body)
end
