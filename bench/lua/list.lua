-- A page of 100 users at a random startIndex (1-based, RFC 7644 §3.4.2.4).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local total = tonumber(os.getenv("BENCH_USERS") or "100")
c.install(function() c.headers(false) end)
request = function()
  local start = math.random(1, math.max(1, total - 100))
  return wrk.format("GET", c.base .. "/Users?startIndex=" .. start .. "&count=100")
end
