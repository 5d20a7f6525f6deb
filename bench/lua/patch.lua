-- PATCH /Users/<id> as Entra sends it: attribute replaces (9 in 10) and disables (1 in 10,
-- active "False" as a string).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local ids, n
c.install(function() c.headers(true); ids = c.lines("patch_ids.txt"); n = 0 end)
request = function()
  n = n + 1
  local ops
  if n % 10 == 0 then
    ops = [[{"op":"Replace","path":"active","value":"False"}]]
  else
    ops = string.format([[{"op":"Replace","path":"title","value":"Title %d"},{"op":"Replace","path":"name.familyName","value":"Family %d"},{"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Dept %d"}]],
      math.random(1, 1000), math.random(1, 100000), math.random(0, 49))
  end
  local body = [[{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[]] .. ops .. "]}"
  return wrk.format("PATCH", c.base .. "/Users/" .. c.pick(ids), nil, body)
end
