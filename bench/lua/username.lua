-- Entra's per-user match: userName eq "<upn>" of an existing user.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local names
c.install(function() c.headers(false); names = c.lines("user_names.txt") end)
request = function()
  return wrk.format("GET", c.base .. "/Users?filter=userName+eq+%22" .. c.urlencode(c.pick(names)) .. "%22")
end
