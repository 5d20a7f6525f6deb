-- Ceiling: the bare Django JSON view, same middleware stack, no database.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
c.install(function() c.headers(false) end)
request = function() return wrk.format("GET", "/bench/ping") end
