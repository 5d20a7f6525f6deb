-- Entra's cycle-start probe: userName eq "<random GUID>" that never exists.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
c.install(function() c.headers(false) end)
request = function()
  return wrk.format("GET", c.base .. "/Users?filter=userName+eq+%22" .. c.guid() .. "%22")
end
