-- GET /Users/<id> of an existing user (Entra re-reads by its cached id).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local ids
c.install(function() c.headers(false); ids = c.lines("user_ids.txt") end)
request = function() return wrk.format("GET", c.base .. "/Users/" .. c.pick(ids)) end
