-- Ceilings: a bare JSON view, no database. BENCH_PING_PATH chooses the middleware it passes:
-- /scim/bench/ping the SCIM chain, /bench/ping the admin UI's; the minimal Django app
-- (bench/minimal.py) answers the same path with no middleware at all.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
c.install(function() c.headers(false) end)
local path = os.getenv("BENCH_PING_PATH") or "/scim/bench/ping"
request = function() return wrk.format("GET", path) end
