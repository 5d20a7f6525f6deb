-- Entra's fallback match: externalId eq "<objectId>" of an existing user.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local ids
c.install(function() c.headers(false); ids = c.lines("external_ids.txt") end)
request = function()
  return wrk.format("GET", c.base .. "/Users?filter=externalId+eq+%22" .. c.urlencode(c.pick(ids)) .. "%22")
end
